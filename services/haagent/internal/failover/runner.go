package failover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

// Errors of the procedures.
var (
	// ErrNoCandidate means no instance could be promoted.
	ErrNoCandidate = errors.New("failover: no promotable candidate")
	// ErrNotClaimed means the record could not be written under the fence:
	// the agent is no longer the leader or etcd has no quorum. Nothing changed.
	ErrNotClaimed = errors.New("failover: could not claim the cluster")
	// ErrAborted means a pre-failover hook stopped the procedure.
	ErrAborted = errors.New("failover: aborted by hook")
	// ErrNotFenced means a fence hook is configured and the old master was
	// fenced neither over SQL nor by the hook: nothing was promoted.
	ErrNotFenced = errors.New("failover: old master not fenced")
	// ErrBestUnread means a candidate known to have received more than
	// every candidate that could be read did not answer its fresh read, and
	// the plan does not accept the loss: nothing was promoted.
	ErrBestUnread = errors.New("failover: the most advanced candidate could not be read")
)

// Options configure a Runner.
type Options struct {
	DC      string
	AgentID string
	Ops     *Ops
	Store   *state.Store
	// Audit receives one event per procedure; nil disables auditing.
	Audit *audit.Outbox
	Hooks Hooks
	// ApplyTimeout bounds the wait for a candidate's relay log (default 5s).
	ApplyTimeout time.Duration
	// FenceTimeout bounds fencing an old master that may be unreachable
	// (default 1s).
	FenceTimeout time.Duration
	// StepTimeout bounds each step that changes an instance (default 5s;
	// the relay-log waits get ApplyTimeout on top).
	StepTimeout time.Duration
	// ReadWait bounds the retries of a candidate's fresh read before it is
	// given up (default 3s).
	ReadWait time.Duration
	Metrics  *Metrics
	Logger   zerolog.Logger
	Now      func() time.Time
}

// Runner runs failovers and switchovers.
type Runner struct {
	o   Options
	seq atomic.Uint64
	// read is Ops.Read (replaced in tests).
	read func(ctx context.Context, addr string) (Position, error)
}

// NewRunner returns a Runner.
func NewRunner(o Options) *Runner {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = 5 * time.Second
	}
	if o.FenceTimeout <= 0 {
		o.FenceTimeout = time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 5 * time.Second
	}
	if o.ReadWait <= 0 {
		o.ReadWait = 3 * time.Second
	}
	return &Runner{o: o, read: o.Ops.Read}
}

// Ops returns the runner's instance operations.
func (r *Runner) Ops() *Ops { return r.o.Ops }

// Plan describes an automatic failover.
type Plan struct {
	Cluster topology.Cluster
	// Master is the current master record and MasterRev its revision.
	Master    state.MasterRecord
	MasterRev int64
	// OldPos is the old master's last observed gtid_binlog_pos ("" when
	// never seen), for the RPO.
	OldPos string
	// OldUnprotected: the old master was last seen without an active
	// semi-sync or without a semi-sync replica, so it may have acknowledged
	// writes beyond OldPos that no replica has: the RPO is unknown.
	OldUnprotected bool
	Analysis       string
	DetectedAt     time.Time
	// Candidates are the eligible replicas, best first; fresh positions
	// decide among them.
	Candidates []string
	// Known are the candidates' received positions as the analysis saw
	// them, by name: a candidate that cannot be read still counts for the
	// RPO.
	Known map[string]string
	// AcceptLoss lets the failover promote the best candidate it could read
	// although one it could not read was known to have received more;
	// otherwise that ends the attempt with ErrBestUnread.
	AcceptLoss bool
}

// procedure tracks one record while it runs.
type procedure struct {
	r     *Runner
	fence state.Fence
	// oldAddr is the old master's address, for the hooks.
	oldAddr string
	mu      sync.Mutex // guards rec.Steps: steps may run in parallel
	rec     state.FailoverRecord
}

func (r *Runner) start(kind state.FailoverKind, cl topology.Cluster, fence state.Fence) *procedure {
	now := r.o.Now().UTC()
	return &procedure{r: r, fence: fence, rec: state.FailoverRecord{
		ID: state.NewRecordID(now, cl.DC, cl.Name), DC: cl.DC, Cluster: cl.Name, Kind: kind,
		Outcome: state.OutcomeRunning, StartedAt: now, Agent: r.o.AgentID, FencingRevision: fence.Rev,
		RPOTransactions: -1,
	}}
}

// step runs fn as a named, timed step of the record.
func (p *procedure) step(name string, fn func() error) error {
	at := p.r.o.Now()
	err := fn()
	s := state.Step{Name: name, At: at.UTC(), Took: state.Duration(p.r.o.Now().Sub(at))}
	if err != nil {
		s.Error = err.Error()
	}
	p.addStep(s)
	return err
}

// bounded runs fn as a step with its own deadline: a hung instance fails
// the step instead of holding the procedure (and the agent) forever.
func (p *procedure) bounded(ctx context.Context, name string, limit time.Duration, fn func(ctx context.Context) error) error {
	return p.step(name, func() error {
		sctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		return fn(sctx)
	})
}

func (p *procedure) addStep(s state.Step) {
	p.mu.Lock()
	p.rec.Steps = append(p.rec.Steps, s)
	p.mu.Unlock()
}

func (p *procedure) save(ctx context.Context) error {
	p.mu.Lock()
	rec := p.rec
	rec.Steps = append([]state.Step(nil), p.rec.Steps...)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	return p.r.o.Store.PutFailover(ctx, rec, &p.fence)
}

// claim writes the RUNNING record under the fence: the proof that this
// agent still leads and etcd has quorum, before any instance changes.
func (p *procedure) claim(ctx context.Context) error {
	if err := p.save(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNotClaimed, err)
	}
	return nil
}

func (p *procedure) vars(errText string) HookVars {
	return HookVars{ID: p.rec.ID, Kind: string(p.rec.Kind), DC: p.rec.DC, Cluster: p.rec.Cluster,
		OldMaster: p.rec.OldMaster, OldAddr: p.oldAddr, NewMaster: p.rec.NewMaster, Analysis: p.rec.Analysis, Error: errText}
}

// finish records the outcome, runs the post hooks, audits and counts it.
func (p *procedure) finish(ctx context.Context, err error) (state.FailoverRecord, error) {
	r := p.r
	p.rec.FinishedAt = r.o.Now().UTC()
	switch {
	case err == nil:
		p.rec.Outcome = state.OutcomeSucceeded
	case errors.Is(err, ErrAborted):
		p.rec.Outcome = state.OutcomeAborted
	default:
		p.rec.Outcome = state.OutcomeFailed
	}
	if err != nil {
		p.rec.Error = err.Error()
	}
	hook, cmds := "post_success", r.o.Hooks.PostSuccess
	if err != nil {
		hook, cmds = "post_failure", r.o.Hooks.PostFailure
	}
	hctx := context.WithoutCancel(ctx)
	if herr := p.step(hook, func() error { return r.o.Hooks.Run(hctx, hook, cmds, p.vars(p.rec.Error)) }); herr != nil {
		r.o.Logger.Warn().Err(herr).Str("failover", p.rec.ID).Msg("hook failed")
	}
	if serr := p.save(ctx); serr != nil {
		r.o.Logger.Warn().Err(serr).Str("failover", p.rec.ID).Msg("could not save the final failover record")
	}
	r.o.Metrics.observe(p.rec)
	r.audit(ctx, p.rec)
	ev := r.o.Logger.Info()
	if err != nil {
		ev = r.o.Logger.Error().Err(err)
	}
	ev.Str("failover", p.rec.ID).Str("kind", string(p.rec.Kind)).Str("cluster", p.rec.Cluster).
		Str("old_master", p.rec.OldMaster).Str("new_master", p.rec.NewMaster).Str("outcome", string(p.rec.Outcome)).
		Dur("rto", time.Duration(p.rec.RTO)).Int64("rpo_transactions", p.rec.RPOTransactions).
		Dur("block_window", time.Duration(p.rec.BlockWindow)).Msg("failover finished")
	return p.rec, err
}

func (r *Runner) audit(ctx context.Context, rec state.FailoverRecord) {
	if r.o.Audit == nil {
		return
	}
	action := "failover.automatic"
	if rec.Kind == state.KindSwitchover {
		action = "switchover.run"
	}
	outcome := audit.OutcomeOK
	if rec.Outcome != state.OutcomeSucceeded {
		outcome = audit.OutcomeFailed
	}
	now := r.o.Now()
	ev := audit.Event{
		ID: audit.NewID(now, "haagent-"+r.o.AgentID, r.seq.Add(1)), Time: now.UTC(),
		Actor: "haagent:" + r.o.AgentID, Action: action, Target: rec.DC + "/" + rec.Cluster,
		Params: map[string]string{
			"failover_id": rec.ID, "trigger": rec.Trigger, "analysis": rec.Analysis,
			"old_master": rec.OldMaster, "new_master": rec.NewMaster, "outcome": string(rec.Outcome),
		},
		Outcome: outcome, Error: rec.Error,
		RTOMillis: time.Duration(rec.RTO).Milliseconds(), RPOTransactions: rec.RPOTransactions,
	}
	if rec.BlockWindow > 0 {
		ev.Params["block_window_ms"] = strconv.FormatInt(time.Duration(rec.BlockWindow).Milliseconds(), 10)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := r.o.Audit.Put(actx, ev); err != nil {
		r.o.Logger.Warn().Err(err).Str("failover", rec.ID).Msg("could not write the audit event")
	}
}

// Failover promotes the best candidate of a cluster whose master died. See
// the package documentation for the order of the steps.
func (r *Runner) Failover(ctx context.Context, fence state.Fence, plan Plan) (state.FailoverRecord, error) {
	p := r.start(state.KindFailover, plan.Cluster, fence)
	p.rec.Trigger, p.rec.Analysis = "analysis", plan.Analysis
	p.rec.OldMaster, p.rec.DetectedAt = plan.Master.Instance, plan.DetectedAt.UTC()
	if err := p.claim(ctx); err != nil {
		return p.rec, err
	}
	if err := p.step("pre_failover", func() error {
		return r.o.Hooks.Run(ctx, "pre_failover", r.o.Hooks.PreFailover, p.vars(""))
	}); err != nil {
		return p.finish(ctx, fmt.Errorf("%w: %w", ErrAborted, err))
	}
	// Fence the old master beside the candidate choice: over SQL in case
	// it is only partly dead (bounded; it is usually unreachable) and, with
	// a fence hook, out of band. The promotion waits for one of them to
	// succeed when a fence hook is configured (see fenceOld).
	old, known := instance(plan.Cluster, plan.Master.Instance)
	p.oldAddr = old.Addr
	awaitFence, fenceWait := r.fenceOld(ctx, p, old, known)
	defer fenceWait()
	var cand topology.Instance
	var candPos Position
	var seen []gtid.Pos
	err := p.step("choose_candidate", func() error {
		var err error
		cand, candPos, seen, err = r.choose(ctx, plan)
		return err
	})
	if err != nil {
		return p.finish(ctx, err)
	}
	p.rec.NewMaster = cand.Name
	if err := p.bounded(ctx, "wait_relay_applied", r.o.ApplyTimeout+r.o.StepTimeout, func(ctx context.Context) error {
		return r.o.Ops.WaitApplied(ctx, cand.Addr, candPos.Received, r.o.ApplyTimeout)
	}); err != nil {
		return p.finish(ctx, err)
	}
	if len(r.o.Hooks.Fence) > 0 {
		if err := p.step("await_fence", awaitFence); err != nil {
			return p.finish(ctx, err)
		}
	}
	if err := p.bounded(ctx, "stop_replication", r.o.StepTimeout, func(ctx context.Context) error { return r.o.Ops.StopReplication(ctx, cand.Addr) }); err != nil {
		return p.finish(ctx, err)
	}
	has, exact := r.promotedPos(ctx, p, cand, candPos)
	if err := r.commit(ctx, p, plan.Master, plan.MasterRev, cand, "failover: "+plan.Analysis); err != nil {
		return p.finish(ctx, err)
	}
	if err := p.bounded(ctx, "promote", r.o.StepTimeout, func(ctx context.Context) error { return r.o.Ops.MakeMaster(ctx, cand.Addr) }); err != nil {
		return p.finish(ctx, err)
	}
	p.writable()
	r.repoint(ctx, p, plan.Cluster, cand, plan.Master.Instance)
	p.rpo(highWater(plan, seen), has, exact)
	p.unprotected(plan)
	fenceWait()
	return p.finish(ctx, nil)
}

// fenceOld starts fencing the old master: over SQL (kill the clients,
// read_only=1; bounded by FenceTimeout) and, when a fence hook is
// configured, out of band at the same time. With a fence hook, await
// returns nil once one of them succeeded and ErrNotFenced when both failed;
// without one it returns nil at once. wait waits for both to end.
//
// A refused connection counts as fenced: nothing listens on the old
// master's address (a killed master), and an instance comes back only
// through a boot, read-only. A network that resets connections to a server
// that still serves others would defeat that; ADR 0008 says so.
//
// Without a fence hook nothing waits for the SQL fence: a master that
// cannot be reached cannot be fenced over SQL, and the analysis fences it
// as soon as it is reachable again. Until then a resumed master answers
// read_only=0 beside the new master, but it cannot acknowledge a write:
// its replicas were repointed and semi-sync waits semi_sync_timeout.
// ADR 0008 says what each mode guarantees.
func (r *Runner) fenceOld(ctx context.Context, p *procedure, old topology.Instance, known bool) (await func() error, wait func()) {
	var wg sync.WaitGroup
	results := make(chan error, 2)
	n := 0
	if known {
		n++
		wg.Go(func() {
			fctx, cancel := context.WithTimeout(ctx, r.o.FenceTimeout)
			defer cancel()
			err := p.step("fence_old_master", func() error { return r.o.Ops.Fence(fctx, old.Addr) })
			if errors.Is(err, syscall.ECONNREFUSED) {
				// Nothing listens on its address: it is down, and it
				// can only come back through a boot, which is read-only.
				p.addStep(state.Step{Name: "old_master_down", At: r.o.Now().UTC()})
				err = nil
			}
			results <- err
		})
	}
	if len(r.o.Hooks.Fence) > 0 {
		n++
		wg.Go(func() {
			results <- p.step("fence_hook", func() error { return r.o.Hooks.Run(ctx, "fence", r.o.Hooks.Fence, p.vars("")) })
		})
	}
	var once sync.Once
	var verdict error
	await = func() error {
		if len(r.o.Hooks.Fence) == 0 {
			return nil
		}
		once.Do(func() {
			var errs []error
			for range n {
				err := <-results
				if err == nil {
					return
				}
				errs = append(errs, err)
			}
			verdict = fmt.Errorf("%w: %s: %w", ErrNotFenced, p.rec.OldMaster, errors.Join(errs...))
		})
		return verdict
	}
	return await, wg.Wait
}

// writable stamps the moment the new master accepted writes.
func (p *procedure) writable() {
	p.rec.WritableAt = p.r.o.Now().UTC()
	p.rec.RTO = state.Duration(p.rec.WritableAt.Sub(p.rec.DetectedAt))
}

// commit writes the new master record under the fence: from here on the
// new master is the master, even if this agent dies before the next step.
func (r *Runner) commit(ctx context.Context, p *procedure, old state.MasterRecord, oldRev int64,
	to topology.Instance, reason string) error {
	return p.step("write_master_record", func() error {
		rec := state.MasterRecord{DC: p.rec.DC, Cluster: p.rec.Cluster, Instance: to.Name, Addr: to.Addr,
			Term: old.Term + 1, UpdatedAt: r.o.Now().UTC(), Reason: reason}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := r.o.Store.PutMaster(wctx, rec, oldRev, &p.fence)
		return err
	})
}

// repoint points every other instance at the new master, in parallel.
// The old master is left to the analysis (it rejoins when it returns).
// Failures are recorded; the analysis repoints stragglers later.
func (r *Runner) repoint(ctx context.Context, p *procedure, cl topology.Cluster, to topology.Instance, skip ...string) {
	var wg sync.WaitGroup
	for _, in := range cl.Instances {
		if in.Name == to.Name || contains(skip, in.Name) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := r.o.Now()
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := r.o.Ops.Replicate(rctx, in.Addr, to.Addr, mysqld.SlavePos)
			cancel()
			s := state.Step{Name: "repoint " + in.Name, At: at.UTC(), Took: state.Duration(r.o.Now().Sub(at))}
			if err != nil {
				s.Error = err.Error()
			}
			p.addStep(s)
		}()
	}
	wg.Wait()
}

// highWater is the most the cluster is known to have had: the old
// master's last observed position merged with every candidate's received
// position, as observed and as read now. A promotion that lacks part of
// it lost that part.
func highWater(plan Plan, seen []gtid.Pos) gtid.Pos {
	var hw gtid.Pos
	known := false
	add := func(s string) {
		if s == "" {
			return
		}
		if p, err := gtid.ParsePos(s); err == nil {
			hw, known = merge(hw, p), true
		}
	}
	add(plan.OldPos)
	for _, n := range plan.Candidates {
		add(plan.Known[n])
	}
	for _, p := range seen {
		hw, known = merge(hw, p), true
	}
	if !known {
		return nil
	}
	return hw
}

// unprotected makes the record honest about an old master that may have
// acknowledged writes asynchronously: the RPO counted from its last observed
// position is only a lower bound, so the record says unknown (-1) and a step
// names what is known.
func (p *procedure) unprotected(plan Plan) {
	if !plan.OldUnprotected {
		return
	}
	known := "none known"
	if p.rec.RPOTransactions > 0 {
		known = fmt.Sprintf("%d known (%s)", p.rec.RPOTransactions, p.rec.LostGTIDs)
	}
	p.addStep(state.Step{Name: "rpo_unknown", At: p.r.o.Now().UTC(), Error: fmt.Sprintf(
		"the old master was last seen without an active semi-sync replica (last position %q): it may have "+
			"acknowledged writes no replica received; lost transactions: %s, possibly more", plan.OldPos, known)})
	p.rec.RPOTransactions = -1
}

// promotedPos returns what the candidate has once its replication stopped,
// read before it is made writable (after that its own writes would hide in
// the count what it lacks): its binlog position. A read that fails is
// retried for ReadWait; when it still fails, the position its relay log was
// waited to apply stands in (exact false): the candidate has at least that,
// so a count from it is an upper bound.
func (r *Runner) promotedPos(ctx context.Context, p *procedure, cand topology.Instance, candPos Position) (gtid.Pos, bool) {
	has, exact := candPos.Received, false
	_ = p.step("read_new_master", func() error {
		pos, err := r.readRetrying(ctx, cand.Addr)
		if err != nil {
			return fmt.Errorf("counting from the applied position %s: %w", candPos.Received, err)
		}
		has, exact = pos.Binlog, true
		return nil
	})
	return has, exact
}

// rpo counts what the cluster had (high) that the new master lacks (has).
// With has only a lower bound of what it has (exact false), a count of
// none is still exact; any other is recorded as unknown, with the bound in
// a step.
func (p *procedure) rpo(high, has gtid.Pos, exact bool) {
	if len(high) == 0 {
		p.addStep(state.Step{Name: "rpo_unknown", At: p.r.o.Now().UTC(),
			Error: "no position of the old master or of any candidate was known"})
		return
	}
	n, lost := analysis.Missing(high, has)
	if n > 0 && !exact {
		p.addStep(state.Step{Name: "rpo_unknown", At: p.r.o.Now().UTC(), Error: fmt.Sprintf(
			"the new master's position could not be read: at most %d transactions lost (%s)", n, lost)})
		return
	}
	p.rec.RPOTransactions, p.rec.LostGTIDs = n, lost
}

// choose reads the candidates now and returns the most advanced by what it
// has received, keeping the given order among equals, and every position
// it read. A read that fails is retried for ReadWait: a candidate is not
// passed over because one probe timed out (it may be the most advanced).
// One that never answered and was known (plan.Known) to have received what
// the choice lacks ends the attempt with ErrBestUnread, unless the plan
// accepts the loss.
func (r *Runner) choose(ctx context.Context, plan Plan) (topology.Instance, Position, []gtid.Pos, error) {
	cl, names := plan.Cluster, plan.Candidates
	type read struct {
		in  topology.Instance
		pos Position
		err error
	}
	reads := make([]read, 0, len(names))
	for _, n := range names {
		if in, ok := instance(cl, n); ok {
			reads = append(reads, read{in: in})
		}
	}
	var wg sync.WaitGroup
	for i := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reads[i].pos, reads[i].err = r.readRetrying(ctx, reads[i].in.Addr)
		}()
	}
	wg.Wait()
	best := -1
	var seen []gtid.Pos
	for i, rd := range reads {
		if rd.err != nil {
			continue
		}
		seen = append(seen, rd.pos.Received)
		if best < 0 || (rd.pos.Received.Contains(reads[best].pos.Received) && !reads[best].pos.Received.Contains(rd.pos.Received)) {
			best = i
		}
	}
	if best < 0 {
		return topology.Instance{}, Position{}, seen, fmt.Errorf("%w among %v", ErrNoCandidate, names)
	}
	for _, rd := range reads {
		if rd.err == nil || plan.AcceptLoss {
			continue
		}
		known, err := gtid.ParsePos(plan.Known[rd.in.Name])
		if err != nil {
			continue
		}
		if n, lost := analysis.Missing(known, reads[best].pos.Received); n > 0 {
			return topology.Instance{}, Position{}, seen, fmt.Errorf("%w: %s (%w) was seen with %d transactions %s lacks (%s)",
				ErrBestUnread, rd.in.Name, rd.err, n, reads[best].in.Name, lost)
		}
	}
	return reads[best].in, reads[best].pos, seen, nil
}

// readRetrying reads addr's positions, retrying failures for ReadWait.
func (r *Runner) readRetrying(ctx context.Context, addr string) (Position, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.ReadWait)
	defer cancel()
	for {
		pos, err := r.read(ctx, addr)
		if err == nil || ctx.Err() != nil {
			return pos, err
		}
		select {
		case <-ctx.Done():
			return pos, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func instance(cl topology.Cluster, name string) (topology.Instance, bool) {
	for _, in := range cl.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return topology.Instance{}, false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Metrics are the procedures' Prometheus metrics.
type Metrics struct {
	total *prometheus.CounterVec
	rto   *prometheus.HistogramVec
	block prometheus.Histogram
	rpo   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_failovers_total", Help: "Failovers and switchovers by kind and outcome.",
		}, []string{"cluster", "kind", "outcome"}),
		rto: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "drplane_haagent_failover_rto_seconds", Help: "Failure detected (or switchover requested) to new master writable.",
			Buckets: []float64{.1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 30},
		}, []string{"kind"}),
		block: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drplane_haagent_switchover_block_seconds", Help: "Switchover write-block window.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2, 5},
		}),
		rpo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_failover_lost_transactions_total", Help: "Transactions the old master had that the new one lacks, by GTID.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.total, m.rto, m.block, m.rpo)
	}
	return m
}

func (m *Metrics) observe(rec state.FailoverRecord) {
	m.total.WithLabelValues(rec.Cluster, string(rec.Kind), string(rec.Outcome)).Inc()
	if rec.Outcome != state.OutcomeSucceeded {
		return
	}
	m.rto.WithLabelValues(string(rec.Kind)).Observe(time.Duration(rec.RTO).Seconds())
	if rec.Kind == state.KindSwitchover {
		m.block.Observe(time.Duration(rec.BlockWindow).Seconds())
	}
	if rec.RPOTransactions > 0 {
		m.rpo.WithLabelValues(rec.Cluster).Add(float64(rec.RPOTransactions))
	}
}
