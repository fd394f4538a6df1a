package evac

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// Audit actions of an operation's own steps (the shards' steps are the
// handoff engine's: handoff.freeze, handoff.flip, handoff.abort).
const (
	ActionStart  = "operation.start"
	ActionWave   = "operation.wave"
	ActionFinish = "operation.finish"
	ActionCancel = "operation.cancel"
	ActionResume = "operation.resume"
	ActionCreate = "operation.create"
)

// Defaults of RunnerOptions.
const (
	DefaultRetryDelay = 500 * time.Millisecond
	// waveAttempts bounds how often a wave is tried again after the shard
	// map changed under it.
	waveAttempts = 3
	// maxReplans bounds the extra waves for shards an evacuated DC came to
	// own during its evacuation.
	maxReplans = 3
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Store  *state.Store
	Leader *leader.Leader
	Engine *handoff.Engine
	// ID names this coordinator (the operation's leader, the audit actor).
	ID         string
	RetryDelay time.Duration
	Logger     zerolog.Logger
	Now        func() time.Time
}

// Runner runs the stored operations while this coordinator leads: one at
// a time, oldest first, wave by wave, each step fenced by the leader's
// token, so that a new leader resumes where a dead one stopped.
type Runner struct {
	o      RunnerOptions
	ops    *Store
	outbox *audit.Outbox
	seq    atomic.Uint64
}

// NewRunner returns a runner.
func NewRunner(o RunnerOptions) *Runner {
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Runner{o: o, ops: NewStore(o.Store), outbox: audit.NewOutbox(o.Store)}
}

// Run runs operations whenever this coordinator leads, until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	for {
		term, err := r.o.Leader.Await(ctx)
		if err != nil {
			return nil //nolint:nilerr // ctx ended: a clean stop
		}
		tctx, cancel := term.Context(ctx)
		err = r.lead(tctx, term.Fence)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.o.Logger.Warn().Err(err).Int64("fence", term.Fence.Rev).Msg("operations: running stopped; resuming")
		}
		if !retry.Sleep(ctx, r.o.RetryDelay) {
			return nil
		}
	}
}

// lead runs every unfinished operation, oldest first, then waits for new
// ones, until ctx ends or an etcd write fails.
func (r *Runner) lead(ctx context.Context, fence state.Fence) error {
	for {
		all, rev, err := r.ops.List(ctx)
		if err != nil {
			return err
		}
		ran := false
		for _, op := range all {
			if !op.State.Unfinished() {
				continue
			}
			if err := r.run(ctx, fence, op); err != nil {
				return err
			}
			ran = true
			break
		}
		if ran {
			continue
		}
		// Wait for a change under the prefix.
		wctx, cancel := context.WithCancel(ctx)
		events := state.Watch[Operation](wctx, r.o.Store, r.ops.Prefix(), true, rev+1)
		select {
		case <-events:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// run carries op on from wherever it is. It returns nil when op reached a
// final state (or was deleted), an error when it must be resumed later
// (the leadership was lost, etcd failed).
func (r *Runner) run(ctx context.Context, fence state.Fence, op Operation) error {
	log := r.o.Logger.With().Str("operation", op.ID).Str("kind", string(op.Kind)).Str("dc", op.DC).Logger()
	if op.State == Canceling && !r.started(op) {
		return r.finish(ctx, fence, &op, Canceled, "")
	}
	op.Leader = r.o.ID
	if op.State == Pending {
		op.State, op.Error = Running, ""
		if op.StartedAt.IsZero() {
			op.StartedAt = r.o.Now().UTC()
		}
		if err := r.save(ctx, fence, &op, r.event(op, ActionStart, nil)); err != nil {
			return err
		}
		log.Info().Int("shards", len(op.Handoffs)).Int("waves", op.Waves()).Msg("operation started")
	}
	switch op.Kind {
	case KindEvacuate:
		if err := r.setDCState(ctx, fence, op, topology.DCDraining); err != nil {
			return r.fail(ctx, fence, &op, err)
		}
	case KindRestore:
		if err := r.setDCState(ctx, fence, op, topology.DCActive); err != nil {
			return r.fail(ctx, fence, &op, err)
		}
	}
	for {
		for w := 0; w < op.Waves(); w++ {
			done, err := r.wave(ctx, fence, &op, w, log)
			if err != nil || done {
				return err
			}
		}
		if op.Kind != KindEvacuate {
			break
		}
		more, err := r.replan(ctx, &op)
		if err != nil {
			return r.fail(ctx, fence, &op, err)
		}
		if !more {
			break
		}
		if err := r.save(ctx, fence, &op); err != nil {
			return err
		}
	}
	if op.Kind == KindEvacuate {
		if n, err := r.owned(ctx, op.DC); err != nil {
			return err
		} else if n > 0 {
			return r.fail(ctx, fence, &op, fmt.Errorf("%s still owns %d shards after every wave (they could not be handed off)", op.DC, n))
		}
		if err := r.setDCState(ctx, fence, op, topology.DCEvacuated); err != nil {
			return r.fail(ctx, fence, &op, err)
		}
	}
	if op.Totals().Aborted > 0 {
		return r.fail(ctx, fence, &op, errors.New("some handoffs were aborted"))
	}
	log.Info().Msg("operation succeeded")
	return r.finish(ctx, fence, &op, Succeeded, "")
}

// started reports whether any handoff of op began.
func (r *Runner) started(op Operation) bool {
	for _, h := range op.Handoffs {
		if h.Step != StepPending {
			return true
		}
	}
	return false
}

// wave runs wave w of op unless it is done. done reports that op reached
// a final state (canceled, failed).
func (r *Runner) wave(ctx context.Context, fence state.Fence, op *Operation, w int, log zerolog.Logger) (done bool, err error) {
	for attempt := 1; ; attempt++ {
		var idx []int
		for i, h := range op.Handoffs {
			if h.Wave == w && !h.Step.Done() {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return false, nil
		}
		// Cancel is looked at between waves.
		cur, err := r.ops.Get(ctx, op.ID)
		if err != nil {
			return false, err
		}
		if cur.State == Canceling {
			op.State, op.Revision = Canceling, cur.Revision
			return true, r.finish(ctx, fence, op, Canceled, "")
		}
		moves := make([]handoff.Move, len(idx))
		// resumed marks the handoffs of a wave a dead leader started: it
		// may have frozen them long before this leader's freeze.
		resumed := make([]bool, len(idx))
		for j, i := range idx {
			h := &op.Handoffs[i]
			if h.Step == StepFrozen && !h.WaveAt.IsZero() {
				resumed[j] = true
			} else {
				h.WaveAt = r.o.Now().UTC()
			}
			h.Step, h.Error = StepFrozen, ""
			moves[j] = handoff.Move{Keyspace: h.Keyspace, Shard: h.Shard, From: h.From, To: h.To, Backup: h.Backup}
		}
		if err := r.save(ctx, fence, op); err != nil {
			return false, err
		}
		rep, werr := r.o.Engine.Wave(ctx, fence, op.ID, moves)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		op.StaleRouters += rep.StaleRouters
		for j, res := range rep.Results {
			h := &op.Handoffs[idx[j]]
			h.Watermark, h.Revision, h.Error = res.Watermark, res.Revision, res.Error
			if !res.FrozenAt.IsZero() {
				h.FrozenAt, h.DoneAt = res.FrozenAt.UTC(), res.DoneAt.UTC()
				if resumed[j] && h.WaveAt.Before(h.FrozenAt) {
					h.FrozenAt = h.WaveAt
				}
			}
			switch res.Outcome {
			case handoff.Moved:
				h.Step = StepMoved
			case handoff.Skipped:
				h.Step = StepSkipped
			default:
				h.Step = StepAborted
			}
		}
		if len(rep.Results) == 0 && werr != nil {
			for _, i := range idx {
				op.Handoffs[i].Step, op.Handoffs[i].Error = StepAborted, werr.Error()
			}
		}
		if werr != nil && errors.Is(werr, state.ErrConflict) && attempt < waveAttempts {
			log.Warn().Err(werr).Int("wave", w).Int("attempt", attempt).Msg("wave conflicted with another change of the shard map; trying again")
			continue
		}
		if werr != nil {
			log.Warn().Err(werr).Int("wave", w).Msg("wave aborted; its shards are unfrozen at their old owner")
			return true, r.fail(ctx, fence, op, fmt.Errorf("wave %d: %w", w, werr))
		}
		t := Totals{}
		for _, i := range idx {
			if b := op.Handoffs[i].Block().Milliseconds(); b > t.BlockMaxMs {
				t.BlockMaxMs = b
			}
		}
		ev := r.event(*op, ActionWave, map[string]string{"wave": strconv.Itoa(w), "shards": strconv.Itoa(len(idx)),
			"block_max_ms": strconv.FormatInt(t.BlockMaxMs, 10), "stale_routers": strconv.Itoa(rep.StaleRouters),
			"acks_ms": msOf(rep.Steps.Acks), "barrier_ms": msOf(rep.Steps.Barrier), "catch_up_ms": msOf(rep.Steps.CatchUp),
			"flip_ms": msOf(rep.Steps.Flip)})
		if err := r.save(ctx, fence, op, ev); err != nil {
			return false, err
		}
		log.Info().Int("wave", w).Int("shards", len(idx)).Int64("block_max_ms", t.BlockMaxMs).Msg("wave done")
		return false, nil
	}
}

func msOf(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// replan appends a wave for shards the evacuated DC owns that no handoff
// of op covers yet (moved into it during the evacuation); false when
// there are none.
func (r *Runner) replan(ctx context.Context, op *Operation) (bool, error) {
	if op.Replans >= maxReplans {
		return false, nil
	}
	w, err := LoadWorld(ctx, r.o.Store)
	if err != nil {
		return false, err
	}
	p, err := PlanEvacuate(w, op.DC, op.To, op.Parallel)
	if err != nil {
		return false, err
	}
	if len(p.Handoffs) == 0 {
		return false, nil
	}
	base := op.Waves()
	for _, h := range p.Handoffs {
		h.Wave += base
		op.Handoffs = append(op.Handoffs, h)
	}
	op.Replans++
	return true, nil
}

// owned counts the shards dc owns.
func (r *Runner) owned(ctx context.Context, dc string) (int, error) {
	w, err := LoadWorld(ctx, r.o.Store)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range w.Maps {
		for _, s := range m.Shards {
			if s.Owner == dc {
				n++
			}
		}
	}
	return n, nil
}

// fail finishes op FAILED with cause.
func (r *Runner) fail(ctx context.Context, fence state.Fence, op *Operation, cause error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.o.Logger.Warn().Err(cause).Str("operation", op.ID).Msg("operation failed; resume it once the cause is fixed")
	return r.finish(ctx, fence, op, Failed, cause.Error())
}

// finish writes op's final state with its audit event.
func (r *Runner) finish(ctx context.Context, fence state.Fence, op *Operation, st State, cause string) error {
	op.State, op.Error, op.FinishedAt = st, cause, r.o.Now().UTC()
	for i := range op.Handoffs {
		if op.Handoffs[i].Step == StepFrozen {
			// A wave that never ran (canceled before its engine call).
			op.Handoffs[i].Step = StepPending
		}
	}
	t := op.Totals()
	params := map[string]string{"state": string(st), "moved": strconv.Itoa(t.Moved), "aborted": strconv.Itoa(t.Aborted),
		"skipped": strconv.Itoa(t.Skipped), "waves_done": strconv.Itoa(t.WavesDone), "block_p50_ms": strconv.FormatInt(t.BlockP50Ms, 10),
		"block_p99_ms": strconv.FormatInt(t.BlockP99Ms, 10), "duration_ms": strconv.FormatInt(t.DurationMs, 10)}
	if st == Canceled && op.Kind == KindEvacuate {
		// The DC stays DRAINING: nothing is planned into it, and it still
		// owns what was not handed off. Resume goes on; restore undoes.
		params["dc_state"] = string(topology.DCDraining)
		params["left"] = strconv.Itoa(t.Shards - t.Moved - t.Skipped)
		r.o.Logger.Info().Str("operation", op.ID).Str("dc", op.DC).Int("left", t.Shards-t.Moved-t.Skipped).
			Msg("evacuation canceled; the DC stays DRAINING until the operation is resumed or the DC restored")
	}
	ev := r.event(*op, ActionFinish, params)
	if st == Failed {
		ev.Outcome, ev.Error = audit.OutcomeFailed, cause
	}
	return r.save(ctx, fence, op, ev)
}

// save writes op fenced; when the record changed meanwhile (a cancel), it
// keeps the stored CANCELING and writes again.
func (r *Runner) save(ctx context.Context, fence state.Fence, op *Operation, events ...audit.Event) error {
	var extra []clientv3.Op
	for _, ev := range events {
		p, err := r.outbox.PutOp(ev)
		if err != nil {
			return err
		}
		extra = append(extra, p)
	}
	for attempt := 0; ; attempt++ {
		rev, err := r.ops.Update(ctx, *op, &fence, extra...)
		if err == nil {
			op.Revision = rev
			return nil
		}
		if !errors.Is(err, state.ErrConflict) || attempt >= 5 {
			return err
		}
		cur, gerr := r.ops.Get(ctx, op.ID)
		if gerr != nil {
			return gerr
		}
		if cur.State == Canceling && op.State == Running {
			op.State = Canceling
		}
		op.Revision = cur.Revision
	}
}

// event is an audit event of op's own steps.
func (r *Runner) event(op Operation, action string, params map[string]string) audit.Event {
	now := r.o.Now().UTC()
	p := map[string]string{"kind": string(op.Kind), "dc": op.DC}
	if op.To != "" {
		p["to"] = op.To
	}
	for k, v := range params {
		p[k] = v
	}
	actor := "coordinator:" + r.o.ID
	return audit.Event{ID: audit.NewID(now, actor+"/operations", r.seq.Add(1)), Time: now, Actor: actor, Action: action,
		Target: op.ID, Params: p, Outcome: audit.OutcomeOK}
}

// setDCState sets op's DC to st in the topology, fenced, with its audit
// event; nothing when it already is.
func (r *Runner) setDCState(ctx context.Context, fence state.Fence, op Operation, st topology.DCState) error {
	for attempt := 0; attempt < 5; attempt++ {
		topo, rev, err := r.o.Store.Topology(ctx)
		if err != nil {
			return err
		}
		if dc, ok := topo.DC(op.DC); ok && dc.StateOf() == st {
			return nil
		}
		next, err := ops.SetDCState(topo, ops.Params{DC: op.DC, DCState: st})
		if err != nil {
			return err
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		now := r.o.Now().UTC()
		actor := "coordinator:" + r.o.ID
		ev, err := r.outbox.PutOp(audit.Event{ID: audit.NewID(now, actor+"/operations", r.seq.Add(1)), Time: now, Actor: actor,
			Action: ops.ActionDCSetState, Target: op.DC, Outcome: audit.OutcomeOK,
			Params: map[string]string{"state": string(st), ops.MetaOperationID: op.ID}})
		if err != nil {
			return err
		}
		resp, err := r.o.Store.Client().Txn(ctx).
			If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(r.o.Store.TopologyKey()), "=", rev)).
			Then(clientv3.OpPut(r.o.Store.TopologyKey(), string(data)), ev).Commit()
		if err != nil {
			return fmt.Errorf("evac: set %s %s: %w", op.DC, st, err)
		}
		if resp.Succeeded {
			r.o.Logger.Info().Str("operation", op.ID).Str("dc", op.DC).Str("state", string(st)).Msg("DC state set")
			return nil
		}
	}
	return fmt.Errorf("%w: the topology kept changing (or the leadership was lost) while setting %s %s", state.ErrConflict, op.DC, st)
}

// LoadWorld reads the topology and every keyspace's shard map (a keyspace
// without a map is left out) and the replication lags from etcd.
func LoadWorld(ctx context.Context, st *state.Store) (World, error) {
	topo, _, err := st.Topology(ctx)
	if err != nil {
		return World{}, err
	}
	w := World{Topo: topo, Maps: map[string]shardmap.Map{}}
	for _, ks := range topo.Keyspaces {
		m, err := shardmap.Load(ctx, st, ks.Name)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return World{}, err
		}
		w.Maps[ks.Name] = m
	}
	stats, err := st.ReplStatsList(ctx, "")
	if err != nil {
		return World{}, err
	}
	lags := map[[2]string]float64{}
	for _, s := range stats {
		lags[[2]string{s.DC, s.Origin}] = s.LagP99Ms
	}
	w.Lag = func(dc, origin string) float64 { return lags[[2]string{dc, origin}] }
	return w, nil
}
