package control

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
)

func kindToProto(k evac.Kind) drplanev1.OperationKind {
	switch k {
	case evac.KindEvacuate:
		return drplanev1.OperationKind_OPERATION_KIND_EVACUATE
	case evac.KindRestore:
		return drplanev1.OperationKind_OPERATION_KIND_RESTORE
	case evac.KindMoveShard:
		return drplanev1.OperationKind_OPERATION_KIND_MOVE_SHARD
	}
	return drplanev1.OperationKind_OPERATION_KIND_UNSPECIFIED
}

func opStateToProto(s evac.State) drplanev1.OperationState {
	switch s {
	case evac.Pending:
		return drplanev1.OperationState_OPERATION_STATE_PENDING
	case evac.Running:
		return drplanev1.OperationState_OPERATION_STATE_RUNNING
	case evac.Canceling:
		return drplanev1.OperationState_OPERATION_STATE_CANCELING
	case evac.Canceled:
		return drplanev1.OperationState_OPERATION_STATE_CANCELED
	case evac.Succeeded:
		return drplanev1.OperationState_OPERATION_STATE_SUCCEEDED
	case evac.Failed:
		return drplanev1.OperationState_OPERATION_STATE_FAILED
	}
	return drplanev1.OperationState_OPERATION_STATE_UNSPECIFIED
}

func stepToProto(s evac.Step) drplanev1.HandoffState {
	switch s {
	case evac.StepPending:
		return drplanev1.HandoffState_HANDOFF_STATE_PENDING
	case evac.StepFrozen:
		return drplanev1.HandoffState_HANDOFF_STATE_FROZEN
	case evac.StepMoved:
		return drplanev1.HandoffState_HANDOFF_STATE_MOVED
	case evac.StepAborted:
		return drplanev1.HandoffState_HANDOFF_STATE_ABORTED
	case evac.StepSkipped:
		return drplanev1.HandoffState_HANDOFF_STATE_SKIPPED
	}
	return drplanev1.HandoffState_HANDOFF_STATE_UNSPECIFIED
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func i32(n int) int32 { return int32(min(max(n, -1<<31), 1<<31-1)) } //nolint:gosec // clamped

func handoffToProto(h evac.Handoff) *drplanev1.Handoff {
	return &drplanev1.Handoff{
		Keyspace: h.Keyspace, Shard: i32(h.Shard), FromDc: h.From, ToDc: h.To, BackupDc: h.Backup, Wave: i32(h.Wave),
		State: stepToProto(h.Step), Watermark: h.Watermark, BlockMs: h.Block().Milliseconds(),
		FrozenAt: ts(h.FrozenAt), DoneAt: ts(h.DoneAt), Error: h.Error, Revision: h.Revision,
	}
}

// operationToProto is the API form of op, with its handoffs when asked.
func operationToProto(op evac.Operation, handoffs bool) *drplanev1.Operation {
	t := op.Totals()
	out := &drplanev1.Operation{
		Id: op.ID, Kind: kindToProto(op.Kind), Dc: op.DC, To: op.To, MoveHome: op.MoveHome, Parallel: i32(op.Parallel),
		State: opStateToProto(op.State), RequestedBy: op.RequestedBy, Reason: op.Reason, CreatedAt: ts(op.CreatedAt),
		StartedAt: ts(op.StartedAt), FinishedAt: ts(op.FinishedAt), Leader: op.Leader, Error: op.Error,
		Totals: &drplanev1.OperationTotals{
			Shards: i32(t.Shards), Moved: i32(t.Moved), Aborted: i32(t.Aborted), Skipped: i32(t.Skipped),
			Waves: i32(t.Waves), WavesDone: i32(t.WavesDone), BlockP50Ms: t.BlockP50Ms, BlockP99Ms: t.BlockP99Ms,
			BlockMaxMs: t.BlockMaxMs, DurationMs: t.DurationMs, StaleRouters: i32(t.StaleRouters),
		},
	}
	for _, tg := range op.Targets {
		out.Targets = append(out.Targets, &drplanev1.PlanTarget{Dc: tg.DC, Shards: i32(tg.Shards), LagMs: tg.LagMs})
	}
	if handoffs {
		for _, h := range op.Handoffs {
			out.Handoffs = append(out.Handoffs, handoffToProto(h))
		}
	}
	return out
}
