package handoff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// Defaults of Options.
const (
	DefaultRouterGrace = 2 * time.Second
	DefaultCatchUp     = 30 * time.Second
)

// Audit actions of handoff steps.
const (
	ActionFreeze = "handoff.freeze"
	ActionFlip   = "handoff.flip"
	ActionAbort  = "handoff.abort"
)

// Errors.
var (
	// ErrCatchUp means the target did not apply up to the watermark in time.
	ErrCatchUp = errors.New("handoff: target did not catch up in time")
	// ErrBarrier means the old owner's collector could not write the barrier.
	ErrBarrier = errors.New("handoff: barrier not written")
	// ErrShardChanged means a shard is no longer as the plan expects.
	ErrShardChanged = errors.New("handoff: shard changed")
)

// Move is one shard to hand off.
type Move struct {
	Keyspace string `json:"keyspace"`
	Shard    int    `json:"shard"`
	From     string `json:"from"`
	To       string `json:"to"`
	Backup   string `json:"backup"`
}

// Outcome of one move.
type Outcome string

// Outcomes.
const (
	Moved   Outcome = "MOVED"
	Aborted Outcome = "ABORTED"
	Skipped Outcome = "SKIPPED"
)

// Result is what became of one move.
type Result struct {
	Move
	Outcome   Outcome   `json:"outcome"`
	Watermark string    `json:"watermark,omitempty"`
	FrozenAt  time.Time `json:"frozen_at,omitzero"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	Revision  int64     `json:"revision,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Block is how long the shard refused writes.
func (r Result) Block() time.Duration {
	if r.FrozenAt.IsZero() || r.DoneAt.IsZero() {
		return 0
	}
	return r.DoneAt.Sub(r.FrozenAt)
}

// Options configure an Engine.
type Options struct {
	Store   *state.Store
	Routers *Routers
	// RouterGrace bounds the wait for routers' acknowledgements
	// (DefaultRouterGrace); CatchUp the wait for the targets' watermarks
	// (DefaultCatchUp); Barrier the wait for the old owner's collector to
	// write the barrier (CatchUp when unset).
	RouterGrace, CatchUp, Barrier time.Duration
	// Actor is the audit actor of the steps ("coordinator:<id>").
	Actor  string
	Logger zerolog.Logger
	Now    func() time.Time
}

// Engine carries out handoffs, one wave at a time, on the leader.
type Engine struct {
	o   Options
	seq uint64
}

// NewEngine returns an engine.
func NewEngine(o Options) *Engine {
	if o.RouterGrace <= 0 {
		o.RouterGrace = DefaultRouterGrace
	}
	if o.CatchUp <= 0 {
		o.CatchUp = DefaultCatchUp
	}
	if o.Barrier <= 0 {
		o.Barrier = o.CatchUp
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Engine{o: o}
}

// WaveReport is the outcome of one wave.
type WaveReport struct {
	Results []Result
	// StaleRouters are the route streams that did not acknowledge the
	// freeze within the grace.
	StaleRouters int
	// Steps is how long each step of the block window took.
	Steps Steps
}

// Steps times the steps of a wave's block window, from the freeze's
// commit: waiting for the routers' acknowledgements, for the old owners'
// barriers, for every live DC to apply up to them, and the flip's commit.
type Steps struct {
	Acks, Barrier, CatchUp, Flip time.Duration
}

// Wave hands off moves, all of one keyspace, together: one freeze, one
// barrier per old owner, one flip. A move whose shard is already at its
// target with this operation's fence is reported MOVED again (a resumed
// wave); one whose shard is elsewhere is SKIPPED. If the wave cannot
// finish (a timeout, a failed barrier), every shard it froze is unfrozen
// at its old owner and reported ABORTED, and the error is returned. Every
// write is fenced by the leader's token.
func (e *Engine) Wave(ctx context.Context, fence state.Fence, opID string, moves []Move) (WaveReport, error) {
	var rep WaveReport
	if len(moves) == 0 {
		return rep, nil
	}
	ks := moves[0].Keyspace
	topo, _, err := e.o.Store.Topology(ctx)
	if err != nil {
		return rep, err
	}
	ksDef, ok := topo.Keyspace(ks)
	if !ok {
		return rep, fmt.Errorf("%w: keyspace %q is not in the topology", ErrShardChanged, ks)
	}
	m, err := shardmap.Load(ctx, e.o.Store, ks)
	if err != nil {
		return rep, err
	}
	// 1. Freeze.
	var live []int // indexes into moves
	results := make([]Result, len(moves))
	next := m
	for i, mv := range moves {
		results[i] = Result{Move: mv}
		s, ok := m.Shard(mv.Shard)
		switch {
		case !ok:
			results[i].Outcome, results[i].Error = Skipped, "no such shard"
		case s.Owner == mv.To:
			if f, ok := s.FenceOf(mv.From); ok && f.OperationID == opID {
				results[i].Outcome, results[i].Watermark, results[i].Revision = Moved, f.Watermark, f.Revision
			} else {
				results[i].Outcome, results[i].Error = Skipped, "already owned by "+mv.To
			}
		case s.Owner != mv.From:
			results[i].Outcome, results[i].Error = Skipped, "owned by "+s.Owner+", not "+mv.From
		case s.State == shardmap.Frozen && s.FrozenBy != opID:
			results[i].Outcome, results[i].Error = Skipped, "frozen by "+s.FrozenBy
		default:
			if next, err = shardmap.Freeze(next, mv.Shard, opID); err != nil {
				return rep, err
			}
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		rep.Results = results
		return rep, nil
	}
	frozenRev, err := e.saveMap(ctx, fence, next, m.Revision, topo, ActionFreeze, opID, moves, live)
	if err != nil {
		return rep, err
	}
	frozenAt := e.o.Now()
	for _, i := range live {
		results[i].FrozenAt = frozenAt
	}
	abort := func(cause error) (WaveReport, error) {
		e.unfreeze(ctx, fence, ks, opID, moves, live, topo, cause)
		for _, i := range live {
			results[i].Outcome, results[i].Error, results[i].DoneAt = Aborted, cause.Error(), e.o.Now()
		}
		rep.Results = results
		return rep, cause
	}
	// 2. Routers acknowledge the freeze.
	step := frozenAt
	lap := func(d *time.Duration) {
		now := e.o.Now()
		*d, step = now.Sub(step), now
	}
	stale, err := e.o.Routers.Wait(ctx, ks, frozenRev, e.o.RouterGrace)
	if err != nil {
		return abort(err)
	}
	rep.StaleRouters = len(stale)
	lap(&rep.Steps.Acks)
	for _, s := range stale {
		e.o.Logger.Warn().Str("stream", s.ID).Str("dc", s.DC).Str("client", s.Client).Int64("map_revision", frozenRev).
			Msg("router did not acknowledge the freeze within the grace; going on (a write it admits is refused as divergence)")
	}
	// 3. One barrier per old owner: its capture watermark.
	byFrom := map[string][]int{}
	for _, i := range live {
		byFrom[moves[i].From] = append(byFrom[moves[i].From], i)
	}
	marks := map[string]string{}
	for from, idx := range byFrom {
		shards := make([]int32, len(idx))
		for j, i := range idx {
			shards[j] = int32(moves[i].Shard) //nolint:gosec // shard ids are below shardmap.MaxShards
		}
		gtid, err := e.barrier(ctx, from, ksDef, opID, shards)
		if err != nil {
			return abort(err)
		}
		marks[from] = gtid
	}
	lap(&rep.Steps.Barrier)
	// 4. Every other live DC (the targets above all) applied up to it.
	for from, idx := range byFrom {
		dcs := map[string]bool{}
		for _, i := range idx {
			dcs[moves[i].To] = true
		}
		for _, dc := range topo.DCs {
			if dc.Name != from && dc.StateOf() != topology.DCDown {
				dcs[dc.Name] = true
			}
		}
		for dc := range dcs {
			if err := e.caughtUp(ctx, dc, from, ks, marks[from], moves, idx); err != nil {
				return abort(err)
			}
		}
	}
	lap(&rep.Steps.CatchUp)
	// 5. Flip and unfreeze in one fenced transaction.
	cur, err := shardmap.Load(ctx, e.o.Store, ks)
	if err != nil {
		return abort(err)
	}
	flipped := cur
	for _, i := range live {
		mv := moves[i]
		s, ok := cur.Shard(mv.Shard)
		if !ok || s.Owner != mv.From || s.FrozenBy != opID {
			return abort(fmt.Errorf("%w: shard %d changed during its handoff", ErrShardChanged, mv.Shard))
		}
		if flipped, err = shardmap.Handoff(flipped, mv.Shard, mv.To, mv.Backup, shardmap.Fence{Watermark: marks[mv.From], OperationID: opID}); err != nil {
			return abort(err)
		}
	}
	rev, err := e.saveMap(ctx, fence, flipped, cur.Revision, topo, ActionFlip, opID, moves, live)
	if err != nil {
		return abort(err)
	}
	done := e.o.Now()
	rep.Steps.Flip = done.Sub(step)
	for _, i := range live {
		results[i].Outcome, results[i].Watermark, results[i].DoneAt, results[i].Revision = Moved, marks[moves[i].From], done, rev
	}
	rep.Results = results
	e.o.Logger.Info().Str("operation", opID).Str("keyspace", ks).Int("shards", len(live)).
		Dur("acks", rep.Steps.Acks).Dur("barrier", rep.Steps.Barrier).Dur("catch_up", rep.Steps.CatchUp).Dur("flip", rep.Steps.Flip).
		Msg("wave handed off")
	return rep, nil
}

// saveMap stores m fenced and compared, with one audit event per move.
func (e *Engine) saveMap(ctx context.Context, fence state.Fence, m shardmap.Map, prevRev int64, topo topology.Topology,
	action, opID string, moves []Move, idx []int,
) (int64, error) {
	if err := m.Validate(topo); err != nil {
		return 0, err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	key := shardmap.Key(e.o.Store, m.Keyspace)
	ops := []clientv3.Op{clientv3.OpPut(key, string(data))}
	ops = append(ops, e.auditOps(action, opID, moves, idx, "")...)
	resp, err := e.o.Store.Client().Txn(ctx).
		If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(key), "=", prevRev)).
		Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("handoff: write shard map: %w", err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: shard map of %s changed or the leadership was lost", state.ErrConflict, m.Keyspace)
	}
	return resp.Header.Revision, nil
}

// auditOps returns the outbox puts of one audit event per move (at most
// 100 per transaction: etcd bounds the operations of one; the rest are
// summarised in the first event's parameters).
func (e *Engine) auditOps(action, opID string, moves []Move, idx []int, cause string) []clientv3.Op {
	outbox := audit.NewOutbox(e.o.Store)
	now := e.o.Now().UTC()
	var ops []clientv3.Op
	for n, i := range idx {
		if n >= 100 {
			break
		}
		mv := moves[i]
		e.seq++
		ev := audit.Event{
			ID: audit.NewID(now, e.o.Actor, e.seq), Time: now, Actor: e.o.Actor, Action: action,
			Target: mv.Keyspace + "/" + strconv.Itoa(mv.Shard), Outcome: audit.OutcomeOK,
			Params: map[string]string{"operation_id": opID, "from": mv.From, "to": mv.To, "wave_shards": strconv.Itoa(len(idx))},
		}
		if cause != "" {
			ev.Outcome, ev.Error = audit.OutcomeFailed, cause
		}
		if op, err := outbox.PutOp(ev); err == nil {
			ops = append(ops, op)
		}
	}
	return ops
}

// unfreeze gives the shards the wave froze back to their old owner.
func (e *Engine) unfreeze(ctx context.Context, fence state.Fence, ks, opID string, moves []Move, idx []int, topo topology.Topology, cause error) {
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; attempt < 20; attempt++ {
		m, err := shardmap.Load(ctx, e.o.Store, ks)
		if err == nil {
			next := m
			for _, i := range idx {
				if s, ok := m.Shard(moves[i].Shard); ok && s.State == shardmap.Frozen && s.FrozenBy == opID {
					next, _ = shardmap.SetShardState(next, moves[i].Shard, shardmap.Active)
				}
			}
			if _, err = e.saveMap(ctx, fence, next, m.Revision, topo, ActionAbort, opID, moves, idx); err == nil {
				return
			}
		}
		e.o.Logger.Warn().Err(err).Str("operation", opID).Msg("unfreeze after an aborted wave failed; retrying")
		time.Sleep(100 * time.Millisecond)
	}
	e.o.Logger.Error().Err(cause).Str("operation", opID).Msg("could not unfreeze the shards of an aborted wave; the operation's resume will")
}

// barrier asks from's collector for a barrier and waits for its GTID.
func (e *Engine) barrier(ctx context.Context, from string, ks topology.Keyspace, opID string, shards []int32) (string, error) {
	id := opID + "-" + strconv.FormatInt(e.o.Now().UnixNano(), 36)
	b := state.Barrier{ID: id, DC: from, Keyspace: ks.Name, Database: ks.Database, Shards: shards, OperationID: opID,
		RequestedAt: e.o.Now().UTC()}
	key := e.o.Store.BarrierKey(from, id)
	if _, err := state.Put(ctx, e.o.Store, key, b, state.PutOptions{PrevRev: 0}); err != nil {
		return "", err
	}
	defer func() {
		_, _ = e.o.Store.Client().Delete(context.WithoutCancel(ctx), key)
	}()
	vals, _, err := follow(ctx, e.o.Store, key, false, time.Now().Add(e.o.Barrier), func(m map[string]state.Barrier) bool {
		return m[key].GTID != "" || m[key].Error != ""
	})
	switch got := vals[key]; {
	case err != nil:
		return "", err
	case got.GTID != "":
		return got.GTID, nil
	case got.Error != "":
		return "", fmt.Errorf("%w in %s: %s", ErrBarrier, from, got.Error)
	}
	return "", fmt.Errorf("%w: no collector of %s wrote barrier %s within %s", ErrBarrier, from, id, e.o.Barrier)
}

// caughtUp waits until dc's watermarks of origin from for the moves' shards
// are at or past mark.
func (e *Engine) caughtUp(ctx context.Context, dc, from, ks, mark string, moves []Move, idx []int) error {
	want, err := gtid.ParsePos(mark)
	if err != nil {
		return fmt.Errorf("%w: barrier gtid %q: %w", ErrBarrier, mark, err)
	}
	prefix := e.o.Store.Prefix("watermarks", dc, from, ks)
	missing := func(wms map[string]state.Watermark) []int {
		at := make(map[int32]string, len(wms))
		for _, w := range wms {
			at[w.Shard] = w.GTID
		}
		var out []int
		for _, i := range idx {
			pos, err := gtid.ParsePos(at[int32(moves[i].Shard)]) //nolint:gosec // shard ids are small
			if err != nil || !pos.Contains(want) || len(pos) == 0 {
				out = append(out, moves[i].Shard)
			}
		}
		return out
	}
	wms, ok, err := follow(ctx, e.o.Store, prefix, true, time.Now().Add(e.o.CatchUp), func(wms map[string]state.Watermark) bool {
		return len(missing(wms)) == 0
	})
	if err != nil || ok {
		return err
	}
	left := missing(wms)
	sort.Ints(left)
	return fmt.Errorf("%w: %s has not applied %s of %s up to %s for shards %v", ErrCatchUp, dc, ks, from, mark, head(left))
}

func head(xs []int) []int {
	if len(xs) > 10 {
		return xs[:10]
	}
	return xs
}
