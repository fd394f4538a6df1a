package supervise

import (
	"context"
	"strconv"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
	"github.com/drplane/drplane/services/haagent/internal/repair"
)

// repair hands an instance that must rejoin (OrphanInstance) or holds
// errant transactions (ErrantGTID) to the repairer, on a goroutine of its
// own: a rewind takes a few seconds and the cluster's supervision (a
// failover of the new master) must not wait for it. The repairer fences
// the instance first; it rejoins it, rewinds and rejoins it, or refuses,
// and a refused instance is quarantined with the reason.
func (s *Supervisor) repair(ctx context.Context, fence state.Fence, cl topology.Cluster, sn snapshot,
	in topology.Instance, a analysis.Analysis) {
	master, ok := sn.masters[cl.Name]
	if !ok || master.Instance == in.Name {
		return
	}
	key := cl.Name + "/" + in.Name
	if !s.o.Repair.Claim(key) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		res, err := s.o.Repair.Repair(ctx, repair.Job{Cluster: cl, Instance: in, Master: master, Fence: fence})
		s.o.Repair.Release(key, err != nil)
		s.repaired(ctx, fence, cl, in, master, a, res, err)
	}()
}

// repaired reports a repair's end: log, metric, audit event, and the
// quarantine of a refused instance.
func (s *Supervisor) repaired(ctx context.Context, fence state.Fence, cl topology.Cluster, in topology.Instance,
	master state.MasterRecord, a analysis.Analysis, res repair.Result, err error) {
	rec := res.Record
	target := cl.Name + "/" + in.Name
	params := map[string]string{"code": string(a.Code), "detail": a.Detail, "master": master.Instance}
	log := s.o.Logger.With().Str("cluster", cl.Name).Str("instance", in.Name).Str("code", string(a.Code)).Logger()
	if err != nil {
		s.m.recoveries.WithLabelValues(cl.Name, string(a.Recovery), "error").Inc()
		log.Warn().Err(err).Msg("repair failed")
		s.audit(ctx, "recovery."+string(a.Recovery), target, params, err)
		return
	}
	if res.Outcome != repair.Rejoined {
		params["errant"], params["transactions"] = rec.Errant, strconv.Itoa(rec.Transactions)
		params["failover_id"], params["reason"] = rec.FailoverID, rec.Reason
	}
	switch res.Outcome {
	case repair.Rejoined:
		s.m.recoveries.WithLabelValues(cl.Name, string(analysis.RecoveryRejoin), "ok").Inc()
		log.Info().Str("master", master.Instance).Msg("rejoined")
		s.audit(ctx, "recovery."+string(analysis.RecoveryRejoin), target, params, nil)
	case repair.Rewound:
		params["images"], params["resume"] = rec.Images, rec.Resume
		s.m.recoveries.WithLabelValues(cl.Name, "REWIND", "ok").Inc()
		log.Warn().Str("master", master.Instance).Str("errant", rec.Errant).Int("transactions", rec.Transactions).
			Str("images", rec.Images).Msg("rewound a deposed master's never-acknowledged transactions and rejoined it")
		s.audit(ctx, "repair.rewound", target, params, nil)
	case repair.Refused:
		reason := "errant GTIDs " + rec.Errant + ": not repaired: " + rec.Reason
		qerr := s.putQuarantine(ctx, Quarantine{DC: s.o.DC, Cluster: cl.Name, Instance: in.Name,
			Reason: reason, At: s.o.Now().UTC(), By: s.o.ID}, fence)
		outcome := "ok"
		if qerr != nil {
			outcome = "error"
		}
		s.m.recoveries.WithLabelValues(cl.Name, string(analysis.RecoveryQuarantine), outcome).Inc()
		log.Warn().Err(qerr).Str("reason", reason).Msg("quarantined")
		s.audit(ctx, "repair.refused", target, params, qerr)
	}
}
