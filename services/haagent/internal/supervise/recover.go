package supervise

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
	"github.com/drplane/drplane/services/haagent/internal/failover"
)

// recover carries out one single-instance recovery.
func (s *Supervisor) recover(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot, a analysis.Analysis) {
	var in topology.Instance
	for _, i := range cl.Instances {
		if i.Name == a.Instance {
			in = i
		}
	}
	if s.o.Repair != nil {
		// An instance being repaired is the repairer's alone; an orphan or
		// errant one goes to it.
		if s.o.Repair.Busy(cl.Name + "/" + a.Instance) {
			return
		}
		if a.Recovery == analysis.RecoveryRejoin || a.Recovery == analysis.RecoveryQuarantine {
			s.repair(ctx, fence, cl, sn, in, a)
			return
		}
	}
	master, hasMaster := sn.masters[cl.Name]
	ops := s.o.Runner.Ops()
	actx, cancel := context.WithTimeout(ctx, s.o.ActionTimeout)
	defer cancel()
	var err error
	switch a.Recovery {
	case analysis.RecoveryFence:
		err = ops.Fence(actx, in.Addr)
	case analysis.RecoveryUnfence:
		// Prove the leadership and that the record still names this master
		// before making it writable.
		if err = s.touchMaster(actx, fence, sn, cl.Name); err == nil {
			err = ops.MakeMaster(actx, master.Addr)
		}
	case analysis.RecoveryAdopt:
		rec := state.MasterRecord{DC: s.o.DC, Cluster: cl.Name, Instance: in.Name, Addr: in.Addr, Term: 1,
			UpdatedAt: s.o.Now().UTC(), Reason: "adopted the single writable instance"}
		_, err = s.o.Store.PutMaster(actx, rec, 0, &fence)
	case analysis.RecoveryRepoint:
		if !hasMaster {
			return
		}
		err = ops.Replicate(actx, in.Addr, master.Addr, mysqld.SlavePos)
	case analysis.RecoveryRejoin:
		if !hasMaster {
			return
		}
		err = ops.Replicate(actx, in.Addr, master.Addr, mysqld.CurrentPos)
	case analysis.RecoveryRestartReplication:
		err = ops.StartReplication(actx, in.Addr)
	case analysis.RecoveryQuarantine:
		if !hasMaster {
			return
		}
		errant, cerr := confirmErrant(actx, s.readPos, in.Addr, master.Addr)
		if cerr == nil && len(errant) == 0 {
			s.o.Logger.Info().Str("cluster", cl.Name).Str("instance", in.Name).Str("analysis", a.Detail).
				Msg("errant GTIDs not confirmed by an ordered read of the instance, then the master: not quarantined")
			return
		}
		if err = cerr; err == nil {
			a.Detail += "; confirmed: " + errant.String()
			err = ops.Quarantine(actx, in.Addr)
		}
		if err == nil {
			err = s.putQuarantine(actx, Quarantine{DC: s.o.DC, Cluster: cl.Name, Instance: in.Name,
				Reason: string(a.Code) + ": " + a.Detail, At: s.o.Now().UTC(), By: s.o.ID}, fence)
		}
	default:
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		s.o.Logger.Warn().Err(err).Str("cluster", cl.Name).Str("instance", a.Instance).
			Str("recovery", string(a.Recovery)).Msg("recovery failed")
	} else {
		s.o.Logger.Info().Str("cluster", cl.Name).Str("instance", a.Instance).Str("code", string(a.Code)).
			Str("recovery", string(a.Recovery)).Msg("recovered")
	}
	s.m.recoveries.WithLabelValues(cl.Name, string(a.Recovery), outcome).Inc()
	s.audit(ctx, "recovery."+string(a.Recovery), cl.Name+"/"+a.Instance,
		map[string]string{"code": string(a.Code), "detail": a.Detail}, err)
}

// touchMaster rewrites the master record unchanged under the fence and the
// revision read this cycle: it fails if the agent lost leadership or the
// record changed since.
func (s *Supervisor) touchMaster(ctx context.Context, fence state.Fence, sn snapshot, cluster string) error {
	rec, ok := sn.masters[cluster]
	if !ok {
		return fmt.Errorf("%w: no master record for %s", errNotMaster, cluster)
	}
	rec.UpdatedAt = s.o.Now().UTC()
	_, err := s.o.Store.PutMaster(ctx, rec, sn.masterRevs[cluster], &fence)
	return err
}

func (s *Supervisor) audit(ctx context.Context, action, target string, params map[string]string, err error) {
	if s.o.Audit == nil {
		return
	}
	now := s.o.Now()
	ev := audit.Event{ID: audit.NewID(now, "haagent-"+s.o.ID, s.seq.Add(1)), Time: now.UTC(),
		Actor: "haagent:" + s.o.ID, Action: action, Target: s.o.DC + "/" + target, Params: params, Outcome: audit.OutcomeOK}
	if err != nil {
		ev.Outcome, ev.Error = audit.OutcomeFailed, err.Error()
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if perr := s.o.Audit.Put(actx, ev); perr != nil {
		s.o.Logger.Warn().Err(perr).Str("action", action).Msg("could not write the audit event")
	}
}

// switchover carries out an operator's switchover intent.
func (s *Supervisor) switchover(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot, cm *mind,
	v analysis.Cluster, found []analysis.Analysis, in intent) {
	master, ok := sn.masters[cl.Name]
	if !ok {
		s.finishIntent(ctx, fence, in, "", fmt.Errorf("%s/%s has no master record", in.DC, in.Cluster))
		return
	}
	for _, a := range found {
		if a.Recovery == analysis.RecoveryFailover || a.Code == analysis.NoWritableMaster ||
			a.Code == analysis.TwoWritableMasters || a.Code == analysis.WritableReplica {
			s.finishIntent(ctx, fence, in, "", fmt.Errorf("cluster is not healthy (%s on %q): switchover refused", a.Code, a.Instance))
			return
		}
	}
	cands, excluded := analysis.Candidates(v)
	to := in.To
	if to == "" {
		if len(cands) == 0 {
			s.finishIntent(ctx, fence, in, "", fmt.Errorf("no eligible replica: %v", excluded))
			return
		}
		to = cands[0].Instance.Name
	} else if why, bad := excluded[to]; bad {
		s.finishIntent(ctx, fence, in, "", fmt.Errorf("instance %s is not eligible: %s", to, why))
		return
	}
	running := in
	running.State = state.SwitchoverRunning
	rev, err := s.o.Store.UpdateSwitchover(ctx, running.SwitchoverIntent, in.rev, &fence)
	if err != nil {
		s.o.Logger.Warn().Err(err).Str("switchover", in.ID).Msg("claim switchover")
		return
	}
	running.rev = rev
	plan := failoverPlan(cl, master, sn.masterRevs[cl.Name], to, in.SwitchoverIntent)
	rec, err := s.o.Runner.Switchover(ctx, fence, plan)
	if err == nil {
		cm.mem = cm.mem.SwitchedOver(s.o.Now())
		s.persist(ctx, fence, cm)
	}
	s.finishIntent(ctx, fence, running, rec.ID, err)
}

// finishIntent marks an intent DONE (err nil) or FAILED.
func (s *Supervisor) finishIntent(ctx context.Context, fence state.Fence, in intent, recordID string, err error) {
	in.State, in.RecordID = state.SwitchoverDone, recordID
	if err != nil {
		in.State, in.Error = state.SwitchoverFailed, err.Error()
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, uerr := s.o.Store.UpdateSwitchover(uctx, in.SwitchoverIntent, in.rev, &fence); uerr != nil {
		s.o.Logger.Warn().Err(uerr).Str("switchover", in.ID).Msg("could not record the switchover outcome")
	}
	if err != nil {
		s.o.Logger.Warn().Err(err).Str("switchover", in.ID).Str("cluster", in.Cluster).Msg("switchover failed")
	}
}

// SelfFence fences every master the agent knew of, every instance it last
// saw writable, and every instance of a cluster it has not polled yet (it
// cannot tell which of them is writable). The elector calls it when the
// agent cannot renew its etcd lease and etcd is not merely without quorum,
// before the lease can expire and another agent could promote.
func (s *Supervisor) SelfFence(ctx context.Context, reason string) {
	s.mu.Lock()
	addrs := map[string]string{}
	for _, m := range s.lastMasters {
		addrs[m.Addr] = m.Instance
	}
	for a, n := range s.lastWrite {
		addrs[a] = n
	}
	if s.lastTopo != nil {
		for _, cl := range s.lastTopo.ClustersIn(s.o.DC) {
			if s.polled[cl.Name] {
				continue
			}
			for _, in := range cl.Instances {
				addrs[in.Addr] = in.Name
			}
		}
	}
	s.mu.Unlock()
	s.o.Logger.Error().Str("reason", reason).Int("instances", len(addrs)).Msg("self-fencing: cannot renew the etcd lease")
	var wg sync.WaitGroup
	for addr, name := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.o.Runner.Ops().Fence(ctx, addr)
			outcome := "ok"
			if err != nil {
				outcome = "error"
				s.o.Logger.Error().Err(err).Str("instance", name).Msg("self-fence failed")
			}
			s.m.recoveries.WithLabelValues("", "SELF_FENCE", outcome).Inc()
		}()
	}
	wg.Wait()
}

type metrics struct {
	cycle      prometheus.Histogram
	readErrors prometheus.Counter
	analysis   *prometheus.GaugeVec
	recoveries *prometheus.CounterVec
	blocked    *prometheus.CounterVec
	held       *prometheus.GaugeVec
	busy       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drplane_haagent_cycle_seconds", Help: "Duration of one observe-analyze-recover cycle.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_haagent_state_read_errors_total", Help: "Cycles that could not read etcd (observing only).",
		}),
		analysis: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_haagent_analysis", Help: "Analysis codes currently matching, per cluster.",
		}, []string{"cluster", "code"}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_recoveries_total", Help: "Single-instance recoveries by kind and outcome.",
		}, []string{"cluster", "recovery", "outcome"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_failover_held_total", Help: "Automatic failovers held back, by reason.",
		}, []string{"cluster", "reason"}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_cluster_busy_total", Help: "Cycles that skipped a cluster still busy with the last one's recovery.",
		}, []string{"cluster"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_haagent_failover_held", Help: "1 while an automatic failover of the cluster is held back, by reason.",
		}, []string{"cluster", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.cycle, m.readErrors, m.analysis, m.recoveries, m.blocked, m.held, m.busy)
	}
	return m
}

func failoverPlan(cl topology.Cluster, master state.MasterRecord, rev int64, to string,
	in state.SwitchoverIntent) failover.SwitchoverPlan {
	return failover.SwitchoverPlan{Cluster: cl, Master: master, MasterRev: rev, To: to, Intent: in}
}
