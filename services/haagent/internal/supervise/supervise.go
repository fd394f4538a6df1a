package supervise

import (
	"context"
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
	"github.com/drplane/drplane/services/haagent/internal/elect"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/observe"
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
	// AntiFlap: no automatic failover of a cluster within this window after
	// its master last changed (0: no window).
	AntiFlap time.Duration
	// RetryBackoff: the wait after a failed failover before the next try
	// (default 1s).
	RetryBackoff time.Duration
	// ReadTimeout bounds the etcd read of each cycle (default 500ms).
	ReadTimeout time.Duration
	// ActionTimeout bounds each single-instance recovery (default 5s).
	ActionTimeout time.Duration
	Logger        zerolog.Logger
	Registry      prometheus.Registerer
	Now           func() time.Time
}

// Supervisor runs the active agent's cycle.
type Supervisor struct {
	o   Options
	m   metrics
	seq atomic.Uint64

	mu          sync.Mutex // guards the fields below; Lead and SelfFence may overlap
	lastMasters map[string]state.MasterRecord
	lastWrite   map[string]string // instance addr → name, instances seen writable

	// per-cluster memory, touched only by the Lead goroutine
	detected   map[string]time.Time
	lastPos    map[string]string
	lastID     map[string]uint32 // cluster → the master's server id when last seen
	lastChange map[string]time.Time
	lastTry    map[string]time.Time
	active     map[string]analysis.Analysis
	held       map[string]string // cluster → why its failover is held back
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
	def(&o.Interval, 200*time.Millisecond)
	def(&o.MaxLag, 10*time.Second)
	def(&o.RetryBackoff, time.Second)
	def(&o.ReadTimeout, 500*time.Millisecond)
	def(&o.ActionTimeout, 5*time.Second)
	return &Supervisor{o: o, m: newMetrics(o.Registry), lastMasters: map[string]state.MasterRecord{},
		lastWrite: map[string]string{}}
}

// Lead runs the cycle while l.Ctx lasts. It is the elector's lead callback.
func (s *Supervisor) Lead(l elect.Leadership) error {
	ctx := l.Ctx
	s.detected, s.lastPos, s.lastID = map[string]time.Time{}, map[string]string{}, map[string]uint32{}
	s.lastChange, s.lastTry = map[string]time.Time{}, map[string]time.Time{}
	s.active, s.held = map[string]analysis.Analysis{}, map[string]string{}
	s.o.Logger.Info().Int64("fencing_revision", l.Fence.Rev).Msg("leading: supervising the DC's clusters")
	s.resume(ctx, l.Fence)
	var topo *topology.Topology
	var updates <-chan state.Event[topology.Topology]
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		if updates == nil {
			cur, rev, err := s.o.Store.Topology(ctx)
			if err == nil {
				topo = &cur
				updates = state.Watch[topology.Topology](ctx, s.o.Store, s.o.Store.Key("topology"), false, rev+1)
			} else if ctx.Err() == nil {
				s.o.Logger.Warn().Err(err).Msg("read topology")
			}
		}
		if topo != nil {
			s.cycle(ctx, l.Fence, *topo)
		}
		select {
		case <-ctx.Done():
			s.o.Logger.Info().Msg("leadership ended")
			return nil
		case ev, ok := <-updates:
			switch {
			case !ok:
				updates = nil
			case ev.Deleted:
				topo = nil
			default:
				topo = &ev.Value
			}
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
	views := map[string]analysis.Cluster{}
	found := map[string][]analysis.Analysis{}
	for _, cl := range topo.ClustersIn(s.o.DC) {
		v := s.view(cl, sn, byName)
		views[cl.Name] = v
		found[cl.Name] = analysis.Analyze(v)
		s.report(cl.Name, found[cl.Name])
		s.act(ctx, fence, cl, sn, v, found[cl.Name])
	}
	for _, in := range sn.intents {
		if in.State != state.SwitchoverPending || ctx.Err() != nil {
			continue
		}
		cl, ok := topo.Cluster(s.o.DC, in.Cluster)
		if !ok {
			s.finishIntent(ctx, fence, in, "", fmt.Errorf("cluster %s/%s is not in the topology", in.DC, in.Cluster))
			continue
		}
		s.switchover(ctx, fence, cl, sn, views[cl.Name], found[cl.Name], in)
	}
}

// view builds the analysis input of one cluster.
func (s *Supervisor) view(cl topology.Cluster, sn snapshot, obs map[string]state.InstanceStatus) analysis.Cluster {
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
				s.lastPos[cl.Name], s.lastID[cl.Name] = st.GTIDBinlogPos, st.ServerID
			} else {
				st.GTIDBinlogPos, st.ServerID = s.lastPos[cl.Name], s.lastID[cl.Name]
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
func (s *Supervisor) report(cluster string, found []analysis.Analysis) {
	seen := map[string]bool{}
	for _, a := range found {
		key := cluster + "|" + string(a.Code) + "|" + a.Instance
		seen[key] = true
		if _, ok := s.active[key]; !ok {
			s.active[key] = a
			s.m.analysis.WithLabelValues(cluster, string(a.Code)).Inc()
			s.o.Logger.Warn().Str("cluster", cluster).Str("code", string(a.Code)).Str("instance", a.Instance).
				Str("recovery", string(a.Recovery)).Str("detail", a.Detail).Msg("analysis")
		}
	}
	for key, a := range s.active {
		if len(key) > len(cluster) && key[:len(cluster)+1] == cluster+"|" && !seen[key] {
			delete(s.active, key)
			s.m.analysis.WithLabelValues(cluster, string(a.Code)).Dec()
			s.o.Logger.Info().Str("cluster", cluster).Str("code", string(a.Code)).Str("instance", a.Instance).Msg("analysis cleared")
		}
	}
}

// act carries out the recoveries of one cluster's analysis: a failover
// alone when one is called for, otherwise every single-instance recovery.
func (s *Supervisor) act(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot,
	v analysis.Cluster, found []analysis.Analysis) {
	for _, a := range found {
		if a.Recovery == analysis.RecoveryFailover {
			s.failover(ctx, fence, cl, sn, v, a)
			return
		}
	}
	delete(s.detected, cl.Name)
	delete(s.held, cl.Name)
	for _, a := range found {
		if ctx.Err() != nil {
			return
		}
		s.recover(ctx, fence, cl, sn, a)
	}
}

// failover runs an automatic failover unless a kill switch, the anti-flap
// window or the retry backoff holds it back.
func (s *Supervisor) failover(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot,
	v analysis.Cluster, a analysis.Analysis) {
	now := s.o.Now()
	detected, ok := s.detected[cl.Name]
	if !ok {
		detected = now
		s.detected[cl.Name] = now
	}
	if ks, blocked := state.Blocked(sn.killers, s.o.DC, cl.Name); blocked {
		s.blocked(cl.Name, "killswitch", fmt.Sprintf("kill switch %s set by %s: %s", ks.Scope, ks.SetBy, ks.Reason))
		return
	}
	if last, ok := s.lastChange[cl.Name]; ok && now.Sub(last) < s.o.AntiFlap {
		s.blocked(cl.Name, "antiflap", fmt.Sprintf("master changed %s ago, anti-flap window %s", now.Sub(last).Round(time.Millisecond), s.o.AntiFlap))
		return
	}
	if last, ok := s.lastTry[cl.Name]; ok && now.Sub(last) < s.o.RetryBackoff {
		return
	}
	cands, excluded := analysis.Candidates(v)
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.Instance.Name
	}
	plan := failover.Plan{Cluster: cl, Master: sn.masters[cl.Name], MasterRev: sn.masterRevs[cl.Name],
		OldPos: s.lastPos[cl.Name], Analysis: string(a.Code), DetectedAt: detected, Candidates: names}
	s.o.Logger.Warn().Str("cluster", cl.Name).Str("code", string(a.Code)).Strs("candidates", names).
		Interface("excluded", excluded).Msg("starting automatic failover")
	rec, err := s.o.Runner.Failover(ctx, fence, plan)
	if err != nil {
		s.lastTry[cl.Name] = s.o.Now()
		s.o.Logger.Error().Err(err).Str("cluster", cl.Name).Str("failover", rec.ID).Msg("automatic failover failed")
		return
	}
	s.lastChange[cl.Name] = s.o.Now()
	delete(s.detected, cl.Name)
	delete(s.lastTry, cl.Name)
}

func (s *Supervisor) blocked(cluster, reason, detail string) {
	if s.held[cluster] == reason {
		return
	}
	s.held[cluster] = reason
	s.m.blocked.WithLabelValues(cluster, reason).Inc()
	s.o.Logger.Warn().Str("cluster", cluster).Str("reason", reason).Str("detail", detail).Msg("automatic failover held back")
}

// errNotMaster means an action found the master record changed under it.
var errNotMaster = errors.New("supervise: master record changed")
