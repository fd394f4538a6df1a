package control

import (
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// timestamp converts t; the zero time (not reached yet) becomes nil.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// duration converts d; zero (not measured) becomes nil.
func duration(d state.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(time.Duration(d))
}

func intentToProto(in state.SwitchoverIntent) *drplanev1.SwitchoverIntent {
	return &drplanev1.SwitchoverIntent{
		Id: in.ID, Dc: in.DC, Cluster: in.Cluster, To: in.To, RequestedBy: in.RequestedBy,
		RequestedAt: timestamp(in.RequestedAt), State: switchoverState(in.State), RecordId: in.RecordID, Error: in.Error,
	}
}

func switchoverState(s state.SwitchoverState) drplanev1.SwitchoverState {
	switch s {
	case state.SwitchoverPending:
		return drplanev1.SwitchoverState_SWITCHOVER_STATE_PENDING
	case state.SwitchoverRunning:
		return drplanev1.SwitchoverState_SWITCHOVER_STATE_RUNNING
	case state.SwitchoverDone:
		return drplanev1.SwitchoverState_SWITCHOVER_STATE_DONE
	case state.SwitchoverFailed:
		return drplanev1.SwitchoverState_SWITCHOVER_STATE_FAILED
	}
	return drplanev1.SwitchoverState_SWITCHOVER_STATE_UNSPECIFIED
}

func recordToProto(r state.FailoverRecord) *drplanev1.FailoverRecord {
	out := &drplanev1.FailoverRecord{
		Id: r.ID, Dc: r.DC, Cluster: r.Cluster, Kind: failoverKind(r.Kind), Trigger: r.Trigger, Analysis: r.Analysis,
		OldMaster: r.OldMaster, NewMaster: r.NewMaster, Outcome: failoverOutcome(r.Outcome), Error: r.Error,
		DetectedAt: timestamp(r.DetectedAt), StartedAt: timestamp(r.StartedAt), WritableAt: timestamp(r.WritableAt),
		FinishedAt: timestamp(r.FinishedAt), Rto: duration(r.RTO), RpoTransactions: r.RPOTransactions, LostGtids: r.LostGTIDs,
		BlockWindow: duration(r.BlockWindow), Agent: r.Agent, FencingRevision: r.FencingRevision,
	}
	if rw := r.Rewind; rw != nil {
		out.Rewind = &drplanev1.FailoverRewind{
			From: rw.From, To: rw.To, Transactions: rw.Transactions, LostGtids: rw.LostGTIDs, LostRequests: rw.LostRequests,
			LostRequestsTotal: int32(min(rw.LostRequestsTotal, math.MaxInt32)), Complete: rw.Complete, //nolint:gosec // bounded
			By: rw.By, At: timestamp(rw.At),
		}
	}
	for _, s := range r.Steps {
		out.Steps = append(out.Steps, &drplanev1.FailoverStep{
			Name: s.Name, At: timestamp(s.At), Took: durationpb.New(time.Duration(s.Took)), Error: s.Error,
		})
	}
	return out
}

func failoverKind(k state.FailoverKind) drplanev1.FailoverKind {
	switch k {
	case state.KindFailover:
		return drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER
	case state.KindSwitchover:
		return drplanev1.FailoverKind_FAILOVER_KIND_SWITCHOVER
	}
	return drplanev1.FailoverKind_FAILOVER_KIND_UNSPECIFIED
}

func failoverOutcome(o state.Outcome) drplanev1.FailoverOutcome {
	switch o {
	case state.OutcomeRunning:
		return drplanev1.FailoverOutcome_FAILOVER_OUTCOME_RUNNING
	case state.OutcomeSucceeded:
		return drplanev1.FailoverOutcome_FAILOVER_OUTCOME_SUCCEEDED
	case state.OutcomeFailed:
		return drplanev1.FailoverOutcome_FAILOVER_OUTCOME_FAILED
	case state.OutcomeAborted:
		return drplanev1.FailoverOutcome_FAILOVER_OUTCOME_ABORTED
	}
	return drplanev1.FailoverOutcome_FAILOVER_OUTCOME_UNSPECIFIED
}

func killSwitchToProto(ks state.KillSwitch) *drplanev1.KillSwitch {
	dc, cluster := parseScope(ks.Scope)
	return &drplanev1.KillSwitch{
		Scope: ks.Scope, Dc: dc, Cluster: cluster, Reason: ks.Reason, SetBy: ks.SetBy, SetAt: timestamp(ks.SetAt),
	}
}
