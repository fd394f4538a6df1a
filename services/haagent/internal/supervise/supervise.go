package supervise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
	"github.com/drplane/drplane/services/haagent/internal/decide"
	"github.com/drplane/drplane/services/haagent/internal/elect"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/observe"
	"github.com/drplane/drplane/services/haagent/internal/repair"
)

// Options configure a Supervisor.
type Options struct {
	DC, ID   string
	Store    *state.Store
	Observer *observe.Observer
	Runner   *failover.Runner
	// Audit receives events for automatic actions; nil disables them.
	Audit *audit.Outbox
	// Interval between cycles (default 200ms).
	Interval time.Duration
	// MaxLag: replicas lagging more are not promoted (default 10s).
	MaxLag time.Duration
	// Policy is the failover budget and retry backoff (a zero RetryBackoff
	// or CaughtUp takes decide.DefaultPolicy's, a zero Grace the larger of
	// DefaultPolicy's and 5 intervals; a zero Window disables the budget).
	Policy decide.Policy
	// ReadTimeout bounds the etcd read of each cycle (default 500ms).
	ReadTimeout time.Duration
	// ActionTimeout bounds each single-instance recovery (default 5s).
	ActionTimeout time.Duration
	// Repair, when set, rejoins orphaned instances and repairs or
	// quarantines instances with errant transactions (deposed masters),
	// each on a goroutine of its own; nil: they are rejoined and
	// quarantined directly.
	Repair   *repair.Repairer
	Logger   zerolog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Supervisor runs the active agent's cycle.
type Supervisor struct {
	o   Options
	m   metrics
	seq atomic.Uint64

	mu          sync.Mutex // guards the fields below; Lead and SelfFence may overlap
	lastMasters map[string]state.MasterRecord
	lastWrite   map[string]string // instance addr → name, instances seen writable
	// lastTopo is the topology FollowTopology keeps, across terms (nil: none
	// stored); polled names the clusters a cycle has polled. SelfFence
	// fences every instance of a cluster never polled: the agent can lose
	// etcd before its first cycle.
	lastTopo *topology.Topology
	polled   map[string]bool
	// topoChanged tells Lead that lastTopo changed.
	topoChanged chan struct{}

	// clusters is the memory of each cluster, by name; the map is touched
	// only by the Lead goroutine, a mind only by its cluster's goroutine
	// while busy.
	clusters map[string]*mind
	// wg counts the clusters' goroutines; Lead waits for them.
	wg sync.WaitGroup
	// readPos reads an instance's positions now (the runner's Ops.Read).
	readPos readFunc
}

// mind is the agent's memory of one cluster.
type mind struct {
	mem decide.Memory
	// saved is the durable part as last written to etcd (JSON).
	saved []byte
	// active are the analyses matching now, by code|instance.
	active map[string]analysis.Analysis
	// busy is set while the cluster's goroutine runs.
	busy atomic.Bool
}

// New returns a Supervisor.
func New(o Options) *Supervisor {
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	dp := decide.DefaultPolicy()
	def(&o.Interval, 200*time.Millisecond)
	def(&o.MaxLag, 10*time.Second)
	def(&o.Policy.RetryBackoff, dp.RetryBackoff)
	def(&o.Policy.CaughtUp, dp.CaughtUp)
	def(&o.Policy.Grace, max(dp.Grace, 5*o.Interval))
	def(&o.ReadTimeout, 500*time.Millisecond)
	def(&o.ActionTimeout, 5*time.Second)
	s := &Supervisor{o: o, m: newMetrics(o.Registry), lastMasters: map[string]state.MasterRecord{},
		lastWrite: map[string]string{}, polled: map[string]bool{}, topoChanged: make(chan struct{}, 1)}
	if o.Runner != nil {
		s.readPos = o.Runner.Ops().Read
	}
	return s
}

// Lead runs the cycle while l.Ctx lasts, on the topology FollowTopology
// keeps (which must run beside it: the agent starts it before it
// campaigns), at every interval and at once when the topology changes. It
// is the elector's lead callback.
func (s *Supervisor) Lead(l elect.Leadership) error {
	ctx := l.Ctx
	s.clusters = map[string]*mind{}
	s.o.Logger.Info().Int64("fencing_revision", l.Fence.Rev).Msg("leading: supervising the DC's clusters")
	s.resume(ctx, l.Fence)
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		if topo := s.topology(); topo != nil {
			s.cycle(ctx, l.Fence, *topo)
		}
		select {
		case <-ctx.Done():
			s.wg.Wait()
			s.o.Logger.Info().Msg("leadership ended")
			return nil
		case <-s.topoChanged:
		case <-t.C:
		}
	}
}

// resume closes what a previous leader left running: its failover records
// and switchover intents are marked FAILED (interrupted); the analysis then
// finishes or redoes the recovery from what the instances show.
func (s *Supervisor) resume(ctx context.Context, fence state.Fence) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	recs, err := s.o.Store.Failovers(rctx, s.o.DC, "")
	if err != nil {
		s.o.Logger.Warn().Err(err).Msg("read failover records")
		return
	}
	for _, r := range recs {
		if r.Outcome != state.OutcomeRunning {
			continue
		}
		r.Outcome, r.FinishedAt = state.OutcomeFailed, s.o.Now().UTC()
		r.Error = fmt.Sprintf("interrupted: agent %s lost leadership; agent %s took over and re-analyzed the cluster", r.Agent, s.o.ID)
		if err := s.o.Store.PutFailover(rctx, r, &fence); err != nil {
			s.o.Logger.Warn().Err(err).Str("failover", r.ID).Msg("close interrupted failover record")
			continue
		}
		s.o.Logger.Warn().Str("failover", r.ID).Str("cluster", r.Cluster).Msg("closed a failover interrupted by the previous leader")
	}
	sn, err := s.read(rctx)
	if err != nil {
		return
	}
	for _, in := range sn.intents {
		if in.State != state.SwitchoverRunning {
			continue
		}
		in.State, in.Error = state.SwitchoverFailed, "interrupted: the agent running it lost leadership"
		if _, err := s.o.Store.UpdateSwitchover(rctx, in.SwitchoverIntent, in.rev, &fence); err != nil {
			s.o.Logger.Warn().Err(err).Str("switchover", in.ID).Msg("close interrupted switchover")
		}
	}
}

// cycle is one observe → analyze → recover round.
func (s *Supervisor) cycle(ctx context.Context, fence state.Fence, topo topology.Topology) {
	start := s.o.Now()
	defer func() { s.m.cycle.Observe(s.o.Now().Sub(start).Seconds()) }()
	sn, snErr := s.read(ctx)
	results := s.o.Observer.PollAll(ctx, topo)
	byName := make(map[string]state.InstanceStatus, len(results))
	s.mu.Lock()
	for _, st := range results {
		byName[st.Cluster+"/"+st.Name] = st
		s.polled[st.Cluster] = true
		if st.Reachable && !st.ReadOnly {
			s.lastWrite[st.Addr] = st.Name
		} else if st.Reachable {
			delete(s.lastWrite, st.Addr)
		}
	}
	if snErr == nil {
		for k, v := range sn.masters {
			s.lastMasters[k] = v
		}
	}
	s.mu.Unlock()
	if snErr != nil {
		// Without etcd the agent changes nothing: no record could be
		// written under its fence anyway.
		s.m.readErrors.Inc()
		if ctx.Err() == nil {
			s.o.Logger.Warn().Err(snErr).Msg("cannot read state from etcd: observing only")
		}
		return
	}
	for _, in := range sn.intents {
		if in.State != state.SwitchoverPending || ctx.Err() != nil {
			continue
		}
		if _, ok := topo.Cluster(s.o.DC, in.Cluster); !ok {
			s.finishIntent(ctx, fence, in, "", fmt.Errorf("cluster %s/%s is not in the topology", in.DC, in.Cluster))
		}
	}
	// Each cluster is supervised on its own goroutine: a cluster whose
	// recovery hangs (an instance that stopped answering) is skipped until
	// it is done, and never delays the fencing or failover of another.
	for _, cl := range topo.ClustersIn(s.o.DC) {
		cm := s.mind(cl.Name, sn)
		if !cm.busy.CompareAndSwap(false, true) {
			s.m.busy.WithLabelValues(cl.Name).Inc()
			continue
		}
		var intents []intent
		for _, in := range sn.intents {
			if in.Cluster == cl.Name && in.State == state.SwitchoverPending {
				intents = append(intents, in)
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer cm.busy.Store(false)
			s.supervise(ctx, fence, cl, sn, byName, cm, intents)
		}()
	}
}

// supervise is one cycle of one cluster: analysis, decision, recovery,
// then the operators' pending switchovers.
func (s *Supervisor) supervise(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot,
	byName map[string]state.InstanceStatus, cm *mind, intents []intent) {
	v := s.view(cl, sn, byName, cm)
	found := analysis.Analyze(v)
	s.report(cl.Name, cm, found)
	s.act(ctx, fence, cl, sn, cm, v, found)
	for _, in := range intents {
		if ctx.Err() != nil {
			return
		}
		s.switchover(ctx, fence, cl, sn, cm, v, found, in)
	}
}

// mind returns the memory of a cluster, taken from etcd the first time the
// leader sees the cluster.
func (s *Supervisor) mind(cluster string, sn snapshot) *mind {
	if cm, ok := s.clusters[cluster]; ok {
		return cm
	}
	cm := &mind{active: map[string]analysis.Analysis{}}
	cm.mem.DC, cm.mem.Cluster = s.o.DC, cluster
	if m, ok := sn.memories[cluster]; ok {
		cm.mem.ClusterMemory = m
		cm.saved, _ = json.Marshal(m)
	}
	s.clusters[cluster] = cm
	return cm
}

// view builds the analysis input of one cluster.
func (s *Supervisor) view(cl topology.Cluster, sn snapshot, obs map[string]state.InstanceStatus, cm *mind) analysis.Cluster {
	v := analysis.Cluster{DC: s.o.DC, Name: cl.Name, Master: sn.masters[cl.Name].Instance, MaxLag: s.o.MaxLag}
	for _, in := range cl.Instances {
		st, ok := obs[cl.Name+"/"+in.Name]
		if !ok {
			st = state.InstanceStatus{DC: s.o.DC, Cluster: cl.Name, Name: in.Name, Addr: in.Addr, Role: state.RoleUnknown}
		}
		if in.Name == v.Master {
			// A dead master keeps its last known position: the analysis
			// checks candidates for errant GTIDs against it.
			if st.Reachable {
				cm.mem.MasterPos, cm.mem.MasterID = st.GTIDBinlogPos, st.ServerID
				cm.mem.MasterUnprotected = !st.SemiSyncMaster || st.SemiSyncClients == 0
			} else {
				st.GTIDBinlogPos, st.ServerID = cm.mem.MasterPos, cm.mem.MasterID
			}
		}
		v.Instances = append(v.Instances, analysis.Instance{
			Name: in.Name, Addr: in.Addr, Priority: in.Priority, NoMaster: in.NoMaster,
			Quarantined: sn.quarantined[cl.Name+"/"+in.Name], Status: st,
		})
	}
	return v
}

// report keeps the analysis gauges and logs codes as they appear and clear.
func (s *Supervisor) report(cluster string, cm *mind, found []analysis.Analysis) {
	seen := map[string]bool{}
	for _, a := range found {
		key := string(a.Code) + "|" + a.Instance
		seen[key] = true
		if _, ok := cm.active[key]; !ok {
			cm.active[key] = a
			s.m.analysis.WithLabelValues(cluster, string(a.Code)).Inc()
			s.o.Logger.Warn().Str("cluster", cluster).Str("code", string(a.Code)).Str("instance", a.Instance).
				Str("recovery", string(a.Recovery)).Str("detail", a.Detail).Msg("analysis")
		}
	}
	for key, a := range cm.active {
		if !seen[key] {
			delete(cm.active, key)
			s.m.analysis.WithLabelValues(cluster, string(a.Code)).Dec()
			s.o.Logger.Info().Str("cluster", cluster).Str("code", string(a.Code)).Str("instance", a.Instance).Msg("analysis cleared")
		}
	}
}

// act decides what to do about one cluster (decide.Decide) and carries it
// out: a failover alone when one is to run, otherwise every single-instance
// recovery; then it keeps the memory, in etcd when its durable part changed.
func (s *Supervisor) act(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot, cm *mind,
	v analysis.Cluster, found []analysis.Analysis) {
	var rel *state.HoldRelease
	if r, ok := sn.releases[cl.Name]; ok {
		rel = &r
	}
	plan := decide.Decide(decide.Input{Cluster: v, Found: found, Memory: cm.mem, Switches: sn.killers,
		Release: rel, Now: s.o.Now()}, s.o.Policy)
	cm.mem = plan.Memory
	s.events(ctx, cl.Name, plan.Events)
	switch {
	case plan.Failover != nil:
		s.failover(ctx, fence, cl, sn, cm, *plan.Failover)
	case plan.Hold != nil, plan.Backoff, plan.Confirming:
	default:
		for _, a := range plan.Recoveries {
			if ctx.Err() != nil {
				break
			}
			s.recover(ctx, fence, cl, sn, a)
		}
	}
	s.persist(ctx, fence, cm)
}

// failover runs the automatic failover of the plan.
func (s *Supervisor) failover(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot, cm *mind,
	f decide.Failover) {
	plan := failover.Plan{Cluster: cl, Master: sn.masters[cl.Name], MasterRev: sn.masterRevs[cl.Name],
		OldPos: cm.mem.MasterPos, OldUnprotected: cm.mem.MasterUnprotected, Analysis: string(f.Analysis.Code), DetectedAt: f.DetectedAt,
		Candidates: f.Candidates, Known: f.Known, AcceptLoss: f.AcceptLoss}
	s.o.Logger.Warn().Str("cluster", cl.Name).Str("code", string(f.Analysis.Code)).Strs("candidates", f.Candidates).
		Interface("excluded", f.Excluded).Msg("starting automatic failover")
	rec, err := s.o.Runner.Failover(ctx, fence, plan)
	if err != nil {
		cm.mem = cm.mem.Failed(s.o.Now())
		s.o.Logger.Error().Err(err).Str("cluster", cl.Name).Str("failover", rec.ID).Msg("automatic failover failed")
		return
	}
	cm.mem = cm.mem.FailedOver(s.o.Now())
}

// events reports what the decision changed about a cluster's hold: log,
// metric and audit event.
func (s *Supervisor) events(ctx context.Context, cluster string, evs []decide.Event) {
	for _, e := range evs {
		h := e.Hold
		params := map[string]string{"reason": h.Reason, "detail": e.Detail}
		if !h.Until.IsZero() {
			params["until"] = h.Until.UTC().Format(time.RFC3339)
		}
		switch e.Kind {
		case "held":
			for _, r := range []string{state.HoldKillSwitch, state.HoldFlapping, state.HoldUnsettled, state.HoldLossy} {
				s.m.held.WithLabelValues(cluster, r).Set(0)
			}
			s.m.held.WithLabelValues(cluster, h.Reason).Set(1)
			s.m.blocked.WithLabelValues(cluster, h.Reason).Inc()
			s.o.Logger.Warn().Str("cluster", cluster).Str("reason", h.Reason).Str("detail", h.Detail).
				Time("until", h.Until).Msg("automatic failover held back")
			s.audit(ctx, "failover.held", cluster, params, nil)
		default:
			if h.Reason != "" {
				s.m.held.WithLabelValues(cluster, h.Reason).Set(0)
			}
			s.o.Logger.Info().Str("cluster", cluster).Str("reason", h.Reason).Str("detail", e.Detail).Msg("failover hold " + e.Kind)
			s.audit(ctx, "failover."+e.Kind, cluster, params, nil)
		}
	}
}

// persist writes the durable memory of a cluster when it changed.
func (s *Supervisor) persist(ctx context.Context, fence state.Fence, cm *mind) {
	b, err := json.Marshal(cm.mem.ClusterMemory)
	if err != nil || bytes.Equal(b, cm.saved) || ctx.Err() != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.o.ReadTimeout)
	defer cancel()
	if err := s.o.Store.PutMemory(pctx, cm.mem.ClusterMemory, &fence); err != nil {
		s.o.Logger.Warn().Err(err).Str("cluster", cm.mem.Cluster).Msg("could not save the cluster's memory")
		return
	}
	cm.saved = b
}

// errNotMaster means an action found the master record changed under it.
var errNotMaster = errors.New("supervise: master record changed")
