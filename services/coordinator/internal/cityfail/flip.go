package cityfail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// Audit actions.
const (
	ActionFlip = "city_failover.flip"
	ActionHeld = "city_failover.held"
)

const (
	// maxListed bounds the request ids kept on a record; maxPerShard
	// those listed on one shard.
	maxListed   = 10_000
	maxPerShard = 100
	// mapsPerTxn bounds the shard maps written by one transaction (etcd's
	// default limit is 128 operations per transaction).
	mapsPerTxn = 64
	attempts   = 3
)

// Errors.
var (
	// ErrNothingToFlip means the DC owns no shard.
	ErrNothingToFlip = errors.New("cityfail: the DC owns no shard")
	// ErrUnknownDC means the DC is not in the topology.
	ErrUnknownDC = errors.New("cityfail: unknown DC")
)

// Missing is one request the ledger knows was captured and not applied.
type Missing struct {
	RequestID string
	Keyspace  string
	Shard     int32
}

// Ledger answers which requests captured in origin target has not
// applied (at most max ids, and the total).
type Ledger interface {
	Missing(ctx context.Context, origin, target string, max int) ([]Missing, int64, error)
}

// Options configure a Flipper.
type Options struct {
	Store *state.Store
	// Ledger is optional: without it the estimate has only the lag bound.
	Ledger Ledger
	// Auto is the global auto_city_failover; a keyspace may override it.
	Auto bool
	// ID names this coordinator (the failover's leader); Actor is the
	// audit actor ("coordinator:<id>").
	ID, Actor  string
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	Now        func() time.Time
}

// Flipper carries out city failovers on the leader.
type Flipper struct {
	o       Options
	seq     uint64
	flipSec prometheus.Histogram
}

// New returns a flipper.
func New(o Options) *Flipper {
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &Flipper{o: o, flipSec: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "drplane_coordinator_city_failover_flip_seconds",
		Help:    "Time from a city failover's start to its last shard-map write.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10},
	})}
	if o.Registerer != nil {
		_ = o.Registerer.Register(f.flipSec)
	}
	return f
}

// Request asks for the failover of one DC.
type Request struct {
	DC string
	// Operator is the actor for an operator's request; empty for the
	// automatic one.
	Operator string
	// AcceptLoss lets an operator flip shards over their RPO budget.
	AcceptLoss bool
	// Verdict, Reason, Witnesses and LeaseGoneSince come from the
	// liveness verdict of an automatic failover.
	Verdict, Reason string
	Witnesses       []string
	LeaseGoneSince  time.Time
	// LastSeen is when the DC was last seen alive (its lease held, or a
	// peer seeing it work).
	LastSeen time.Time
}

// evidence is what the plan reads besides the shard maps.
type evidence struct {
	topo     topology.Topology
	switches []state.KillSwitch
	alive    map[string]bool
	// lastHeard[target] is when target last heard from the lost DC.
	lastHeard map[string]time.Time
	lagP99    map[string]time.Duration
	missing   map[string]map[string][]string // target → "ks/shard" → ids
	missTotal map[string]int64
}

// NewRecord returns the PENDING record of req, requested by who at now
// (not stored).
func NewRecord(req Request, who string, now time.Time) Record {
	now = now.UTC()
	rec := Record{
		ID: NewID(req.DC, now), Kind: KindCityFailover, DC: req.DC, Trigger: "automatic", AcceptLoss: req.AcceptLoss,
		State: Pending, Verdict: req.Verdict, Reason: req.Reason, Witnesses: req.Witnesses,
		LeaseGoneSince: req.LeaseGoneSince.UTC(), LastSeen: req.LastSeen.UTC(), RequestedBy: who, CreatedAt: now,
	}
	if req.Operator != "" {
		rec.Trigger = "operator:" + req.Operator
	}
	if rec.Trigger == "automatic" && rec.LeaseGoneSince.IsZero() {
		rec.LeaseGoneSince = now
	}
	return rec
}

// NewRecord returns the PENDING record of req, requested by who.
func (f *Flipper) NewRecord(req Request, who string) Record { return NewRecord(req, who, f.o.Now()) }

// Create stores rec (PENDING), under fence when it is set.
func Create(ctx context.Context, st *state.Store, fence *state.Fence, rec Record) (Record, error) {
	rev, err := state.Put(ctx, st, Key(st, rec.ID), rec, state.PutOptions{PrevRev: 0, Fence: fence})
	if err != nil {
		return rec, fmt.Errorf("cityfail: store %s: %w", rec.ID, err)
	}
	rec.Revision = rev
	return rec, nil
}

// Create stores rec (PENDING) under the leader's fence when fence is set.
func (f *Flipper) Create(ctx context.Context, fence *state.Fence, rec Record) (Record, error) {
	return Create(ctx, f.o.Store, fence, rec)
}

// Failover stores the record of req and runs it at once.
func (f *Flipper) Failover(ctx context.Context, fence state.Fence, req Request) (Record, error) {
	who := f.o.Actor
	if req.Operator != "" {
		who = req.Operator
	}
	rec, err := f.Create(ctx, &fence, f.NewRecord(req, who))
	if err != nil {
		rec.State, rec.Error = Failed, err.Error()
		return rec, err
	}
	return f.Run(ctx, fence, rec)
}

// permanent reports whether err fails the failover for good (a retry
// cannot help); other errors leave it RUNNING for a retry.
func permanent(err error) bool {
	return errors.Is(err, ErrUnknownDC) || errors.Is(err, ErrNothingToFlip) || errors.Is(err, shardmap.ErrInvalid)
}

// Run carries rec (PENDING or RUNNING, read at rec.Revision) through the
// flip: it flips every shard the DC owns to its backup, except those the
// policy holds, and writes the final state with the last flip. Shards this
// failover already flipped (a resumed run) are recognised by their fence.
// It returns the record: DONE or HELD with a nil error; FAILED with the
// error when the failover cannot succeed (an unknown DC, nothing to flip);
// still RUNNING with the error when etcd failed or the leadership was lost
// (run it again later).
func (f *Flipper) Run(ctx context.Context, fence state.Fence, rec Record) (Record, error) {
	key := Key(f.o.Store, rec.ID)
	rec.State, rec.Leader, rec.Error = Running, f.o.ID, ""
	if rec.StartedAt.IsZero() {
		rec.StartedAt = f.o.Now().UTC()
	}
	rev, err := state.Put(ctx, f.o.Store, key, rec, state.PutOptions{PrevRev: rec.Revision, Fence: &fence})
	if err != nil {
		return rec, fmt.Errorf("cityfail: start %s: %w", rec.ID, err)
	}
	rec.Revision = rev
	auto := !strings.HasPrefix(rec.Trigger, "operator:")
	for attempt := 0; attempt < attempts; attempt++ {
		var ev evidence
		if ev, err = f.gather(ctx, rec.DC); err != nil {
			break
		}
		if _, ok := ev.topo.DC(rec.DC); !ok {
			err = fmt.Errorf("%w: %q", ErrUnknownDC, rec.DC)
			break
		}
		rec.Held = ""
		if auto {
			if ks, ok := state.Blocked(ev.switches, rec.DC, ""); ok {
				rec.Held = "kill switch " + ks.Scope + " is set"
			}
		}
		var maps []shardmap.Map
		pol := policyAuto
		switch {
		case rec.AcceptLoss:
			pol = policyNone
		case !auto:
			pol = policyBudget
		}
		maps, err = f.plan(ctx, &rec, ev, pol)
		if err != nil {
			break
		}
		if len(rec.Shards) == 0 {
			err = fmt.Errorf("%w: %s", ErrNothingToFlip, rec.DC)
			break
		}
		var rev int64
		rev, err = f.write(ctx, fence, &rec, maps, ev.topo)
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		if err != nil {
			break
		}
		rec.MapRevision, rec.Revision = rev, rev
		f.markDown(ctx, rec.DC, &rec)
		f.o.Logger.Warn().Str("dc", rec.DC).Str("failover", rec.ID).Str("state", string(rec.State)).
			Int("flipped", rec.Flipped()).Int("shards", len(rec.Shards)).Dur("took", time.Duration(rec.FlipTook)).
			Int("ledger_missing", rec.Estimate.RequestsTotal).Dur("max_lag_bound", time.Duration(rec.Estimate.MaxLagBound)).
			Str("held", rec.Held).Msg("city failover")
		return rec, nil
	}
	if !permanent(err) {
		f.o.Logger.Warn().Err(err).Str("dc", rec.DC).Str("failover", rec.ID).Msg("city failover interrupted; it is run again")
		return rec, err
	}
	rec.State, rec.Error, rec.FinishedAt = Failed, err.Error(), f.o.Now().UTC()
	f.o.Logger.Error().Err(err).Str("dc", rec.DC).Str("failover", rec.ID).Msg("city failover failed")
	data, merr := json.Marshal(rec)
	if merr != nil {
		return rec, err
	}
	ops := append([]clientv3.Op{clientv3.OpPut(key, string(data))}, f.auditOps(rec)...)
	resp, terr := f.o.Store.Client().Txn(context.WithoutCancel(ctx)).
		If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(key), "=", rec.Revision)).Then(ops...).Commit()
	if terr == nil && resp.Succeeded {
		rec.Revision = resp.Header.Revision
	}
	return rec, err
}

// gather reads the evidence the plan needs.
func (f *Flipper) gather(ctx context.Context, dc string) (evidence, error) {
	st := f.o.Store
	ev := evidence{alive: map[string]bool{}, lastHeard: map[string]time.Time{}, lagP99: map[string]time.Duration{},
		missing: map[string]map[string][]string{}, missTotal: map[string]int64{}}
	var err error
	if ev.topo, _, err = st.Topology(ctx); err != nil {
		return ev, err
	}
	if ev.switches, err = st.KillSwitches(ctx); err != nil {
		return ev, err
	}
	leases, _, err := st.DCLeases(ctx)
	if err != nil {
		return ev, err
	}
	for name := range leases {
		ev.alive[name] = true
	}
	views, err := st.DCViews(ctx)
	if err != nil {
		return ev, err
	}
	for _, v := range views {
		if v.Target != dc || !v.LinkKnown {
			continue
		}
		if at := v.ObservedAt.Add(-time.Duration(v.LinkActiveAgo)); at.After(ev.lastHeard[v.Observer]) && time.Duration(v.LinkActiveAgo) < time.Duration(1<<61) {
			ev.lastHeard[v.Observer] = at
		}
	}
	stats, _, err := state.List[state.ReplStats](ctx, st, st.Prefix("repl"))
	if err != nil {
		return ev, err
	}
	for _, s := range stats {
		if s.Origin != dc {
			continue
		}
		if s.LastAppliedAt.After(ev.lastHeard[s.DC]) {
			ev.lastHeard[s.DC] = s.LastAppliedAt
		}
		ev.lagP99[s.DC] = time.Duration(s.LagP99Ms * float64(time.Millisecond))
	}
	if f.o.Ledger != nil {
		for _, d := range ev.topo.DCs {
			if d.Name == dc {
				continue
			}
			ms, total, err := f.o.Ledger.Missing(ctx, dc, d.Name, maxListed)
			if err != nil {
				f.o.Logger.Warn().Err(err).Str("target", d.Name).Msg("ledger not read: the estimate has the lag bound only")
				continue
			}
			by := map[string][]string{}
			for _, m := range ms {
				k := m.Keyspace + "/" + strconv.Itoa(int(m.Shard))
				by[k] = append(by[k], m.RequestID)
			}
			ev.missing[d.Name], ev.missTotal[d.Name] = by, total
		}
	}
	return ev, nil
}

// target returns the DC shard s moves to: its backup when alive, else an
// alive DC of another city, else of the same city.
func target(s shardmap.Shard, lost string, ev evidence) string {
	if s.Backup != "" && s.Backup != lost && ev.alive[s.Backup] {
		return s.Backup
	}
	from, _ := ev.topo.DC(lost)
	var same string
	for _, d := range ev.topo.DCs {
		if d.Name == lost || !ev.alive[d.Name] || d.StateOf() == topology.DCDown {
			continue
		}
		if d.City != from.City {
			return d.Name
		}
		if same == "" {
			same = d.Name
		}
	}
	return same
}

// policy says which holds apply to a failover.
type policy int

const (
	// policyNone: an operator accepted the loss; nothing is held.
	policyNone policy = iota
	// policyBudget: an operator's failover; max_rpo holds.
	policyBudget
	// policyAuto: an automatic failover; kill switches,
	// auto_city_failover and max_rpo hold.
	policyAuto
)

// plan fills rec.Shards and the estimate and returns the new maps. Under
// policyAuto, rec.Held (a kill switch) holds every shard not flipped yet,
// and hold decides for the others.
func (f *Flipper) plan(ctx context.Context, rec *Record, ev evidence, pol policy) ([]shardmap.Map, error) {
	rec.Shards, rec.Estimate = nil, Estimate{}
	var out []shardmap.Map
	wms := map[string]map[int32]state.Watermark{}
	for _, ks := range ev.topo.Keyspaces {
		m, err := shardmap.Load(ctx, f.o.Store, ks.Name)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		next, changed := m, false
		for _, s := range m.Shards {
			sf := ShardFlip{Keyspace: ks.Name, Shard: s.ID, From: rec.DC}
			if s.Owner != rec.DC {
				// Flipped by this failover before a restart of the run?
				fence, ok := s.FenceOf(rec.DC)
				if !ok || fence.OperationID != rec.ID {
					continue
				}
				sf.To, sf.Fence, sf.Flipped = s.Owner, fence.Watermark, true
			} else {
				sf.To = target(s, rec.DC, ev)
			}
			if sf.To == "" {
				sf.Held = "no live DC to take it"
				rec.Shards = append(rec.Shards, sf)
				continue
			}
			wk := sf.To + "/" + ks.Name
			if wms[wk] == nil {
				list, _, err := state.List[state.Watermark](ctx, f.o.Store, f.o.Store.Prefix("watermarks", sf.To, rec.DC, ks.Name))
				if err != nil {
					return nil, err
				}
				wms[wk] = map[int32]state.Watermark{}
				for _, w := range list {
					wms[wk][w.Shard] = w
				}
			}
			if w, ok := wms[wk][int32(s.ID)]; ok && !sf.Flipped { //nolint:gosec // shard ids are below shardmap.MaxShards
				sf.Fence = w.Position
				if sf.Fence == "" {
					sf.Fence = w.GTID
				}
			}
			sf.LagBound = state.Duration(-1)
			if heard, ok := ev.lastHeard[sf.To]; ok {
				sf.LagBound = state.Duration(max(0, rec.lossEnd().Sub(heard)) + ev.lagP99[sf.To])
			}
			ids := ev.missing[sf.To][ks.Name+"/"+strconv.Itoa(s.ID)]
			sf.LedgerMissing = len(ids)
			sf.Requests = ids[:min(len(ids), maxPerShard)]
			switch {
			case sf.Flipped || pol == policyNone:
			case pol == policyAuto && rec.Held != "": // a kill switch holds every shard
				sf.Held = rec.Held
			default:
				sf.Held = hold(ks, f.o.Auto, sf, pol == policyAuto)
			}
			if sf.Held == "" && !sf.Flipped {
				next, err = shardmap.Handoff(next, s.ID, sf.To, rec.DC, shardmap.Fence{Watermark: sf.Fence, OperationID: rec.ID})
				if err != nil {
					return nil, err
				}
				sf.Flipped, changed = true, true
			}
			rec.Estimate.RequestsTotal += len(ids)
			for _, id := range ids {
				if len(rec.Estimate.Requests) < maxListed {
					rec.Estimate.Requests = append(rec.Estimate.Requests, id)
				}
			}
			switch {
			case rec.Estimate.MaxLagBound < 0:
			case sf.LagBound < 0:
				rec.Estimate.MaxLagBound = -1
			case sf.LagBound > rec.Estimate.MaxLagBound:
				rec.Estimate.MaxLagBound = sf.LagBound
			}
			rec.Shards = append(rec.Shards, sf)
		}
		if changed {
			out = append(out, next)
		}
	}
	sort.Strings(rec.Estimate.Requests)
	return out, nil
}

// hold returns why the policy holds a shard of ks ("" to flip it):
// auto_city_failover (when checkAuto) and max_rpo.
func hold(ks topology.Keyspace, auto bool, sf ShardFlip, checkAuto bool) string {
	if ks.AutoCityFailover != nil {
		auto = *ks.AutoCityFailover
	}
	if checkAuto && !auto {
		return "auto_city_failover is off for keyspace " + ks.Name
	}
	budget := ks.MaxRPODuration()
	switch {
	case budget <= 0:
		return ""
	case sf.LagBound < 0:
		return fmt.Sprintf("loss window unknown; keyspace %s has max_rpo %s", ks.Name, budget)
	case time.Duration(sf.LagBound) > budget:
		return fmt.Sprintf("estimated loss window %s over max_rpo %s of keyspace %s", time.Duration(sf.LagBound).Round(time.Millisecond), budget, ks.Name)
	}
	return ""
}

// write stores the maps, the record and the audit events, fenced: the maps
// in batches, the record with the last one.
func (f *Flipper) write(ctx context.Context, fence state.Fence, rec *Record, maps []shardmap.Map, topo topology.Topology) (int64, error) {
	held := 0
	for _, s := range rec.Shards {
		if !s.Flipped {
			held++
			if rec.Held == "" {
				rec.Held = s.Held
			}
		}
	}
	rec.State = Done
	if held > 0 {
		rec.State = Held
	}
	var rev int64
	for i := 0; i < len(maps) || i == 0; i += mapsPerTxn {
		batch := maps[min(i, len(maps)):min(i+mapsPerTxn, len(maps))]
		last := i+mapsPerTxn >= len(maps)
		cmps := []clientv3.Cmp{fence.Cmp(), clientv3.Compare(clientv3.ModRevision(Key(f.o.Store, rec.ID)), "=", rec.Revision)}
		var ops []clientv3.Op
		for _, m := range batch {
			if err := m.Validate(topo); err != nil {
				return 0, err
			}
			data, err := json.Marshal(m)
			if err != nil {
				return 0, err
			}
			key := shardmap.Key(f.o.Store, m.Keyspace)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", m.Revision))
			ops = append(ops, clientv3.OpPut(key, string(data)))
		}
		if last {
			now := f.o.Now()
			if len(maps) > 0 {
				rec.FlippedAt, rec.FlipTook = now.UTC(), state.Duration(now.Sub(rec.StartedAt))
			}
			rec.FinishedAt = now.UTC()
			data, err := json.Marshal(rec)
			if err != nil {
				return 0, err
			}
			ops = append(ops, clientv3.OpPut(Key(f.o.Store, rec.ID), string(data)))
			ops = append(ops, f.auditOps(*rec)...)
		}
		resp, err := f.o.Store.Client().Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return 0, fmt.Errorf("cityfail: write: %w", err)
		}
		if !resp.Succeeded {
			return 0, fmt.Errorf("%w: a shard map changed or the leadership was lost", state.ErrConflict)
		}
		rev = resp.Header.Revision
		if len(maps) == 0 {
			break
		}
	}
	if len(maps) > 0 {
		f.flipSec.Observe(time.Duration(rec.FlipTook).Seconds())
	}
	return rev, nil
}

// auditOps returns the outbox puts of the failover's audit event.
func (f *Flipper) auditOps(rec Record) []clientv3.Op {
	action, outcome := ActionFlip, audit.OutcomeOK
	if rec.State == Held {
		action = ActionHeld
	}
	if rec.Flipped() == 0 {
		outcome = audit.OutcomeDenied
	}
	now := f.o.Now().UTC()
	f.seq++
	ids := rec.Estimate.Requests
	more := ""
	if len(ids) > 100 {
		ids, more = ids[:100], ",…"
	}
	ev := audit.Event{
		ID: audit.NewID(now, f.o.Actor, f.seq), Time: now, Actor: f.o.Actor, Action: action, Target: rec.DC,
		Outcome: outcome, Error: rec.Held, RPOTransactions: int64(rec.Estimate.RequestsTotal),
		Params: map[string]string{
			"failover_id": rec.ID, "trigger": rec.Trigger, "state": string(rec.State),
			"shards": strconv.Itoa(len(rec.Shards)), "flipped": strconv.Itoa(rec.Flipped()),
			"flip_ms":                strconv.FormatInt(time.Duration(rec.FlipTook).Milliseconds(), 10),
			"estimate_requests":      strconv.Itoa(rec.Estimate.RequestsTotal),
			"estimate_request_ids":   strings.Join(ids, ",") + more,
			"estimate_max_lag_bound": time.Duration(rec.Estimate.MaxLagBound).String(),
			"accept_loss":            strconv.FormatBool(rec.AcceptLoss), "verdict": rec.Verdict,
		},
	}
	if who, ok := strings.CutPrefix(rec.Trigger, "operator:"); ok {
		// The operator's token, named as the API's own events name it.
		ev.Actor = "token:" + who
	}
	op, err := audit.NewOutbox(f.o.Store).PutOp(ev)
	if err != nil {
		return nil
	}
	return []clientv3.Op{op}
}

// markDown sets the lost DC DOWN in the topology once a shard moved, so it
// is no witness and no handoff waits for it; best effort (the flip is the
// commit point).
func (f *Flipper) markDown(ctx context.Context, dc string, rec *Record) {
	if rec.Flipped() == 0 {
		return
	}
	for range attempts {
		topo, rev, err := f.o.Store.Topology(ctx)
		if err != nil {
			break
		}
		changed := false
		for i := range topo.DCs {
			if topo.DCs[i].Name == dc && topo.DCs[i].StateOf() != topology.DCDown {
				topo.DCs[i].State, changed = topology.DCDown, true
			}
		}
		if !changed {
			return
		}
		if _, err = f.o.Store.PutTopology(ctx, topo, rev); err == nil {
			return
		}
	}
	f.o.Logger.Warn().Str("dc", dc).Msg("could not mark the lost DC DOWN in the topology")
}
