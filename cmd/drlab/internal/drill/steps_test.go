package drill

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func TestOperationRecord(t *testing.T) {
	op := &drplanev1.Operation{Id: "op-1", State: drplanev1.OperationState_OPERATION_STATE_SUCCEEDED,
		Handoffs: []*drplanev1.Handoff{
			{Shard: 0, State: drplanev1.HandoffState_HANDOFF_STATE_MOVED, BlockMs: 120},
			{Shard: 1, State: drplanev1.HandoffState_HANDOFF_STATE_MOVED, BlockMs: 340},
			{Shard: 2, State: drplanev1.HandoffState_HANDOFF_STATE_SKIPPED},
		},
		Totals: &drplanev1.OperationTotals{BlockMaxMs: 340}}
	r := operationRecord(op)
	assert.Equal(t, &SystemRecord{ID: "op-1", Outcome: "SUCCEEDED", Moved: 2, RTO: 340 * time.Millisecond,
		BlockWindow: 340 * time.Millisecond, RPO: 0}, r)

	op.State = drplanev1.OperationState_OPERATION_STATE_FAILED
	op.Handoffs[1].State = drplanev1.HandoffState_HANDOFF_STATE_ABORTED
	r = operationRecord(op)
	assert.Equal(t, "FAILED", r.Outcome)
	assert.Equal(t, 1, r.Moved)
	assert.Equal(t, 1, r.Aborted)
	assert.EqualValues(t, -1, r.RPO, "a failed operation's loss is not known")
}

func TestMatchRewound(t *testing.T) {
	writes := []Write{
		{ID: 1, Shard: 6, GTID: "1-101-5221", Ack: t0},
		{ID: 2, Shard: 6, GTID: "1-101-5222"}, // failed: no ack
		{ID: 3, Shard: 7, GTID: "1-101-5223", Ack: t0},
	}
	assert.Equal(t, "1-101-5221/6", writes[0].RequestID())
	assert.Empty(t, Write{Shard: 1}.RequestID(), "no GTID, no request id")
	rec := &SystemRecord{Rewound: 2, RewoundIDs: []string{"1-101-5222/6", "1-101-5223/7"}}
	matchRewound(rec, writes)
	assert.Equal(t, 1, rec.RewoundAcked, "only write 3 was acknowledged")
	matchRewound(nil, writes) // no record: nothing to do
}

// TestRetryableSwitchover: only the HA agent's refusal for the cluster's
// health and its abandoning on lost leadership are asked again; any other
// failure fails the step.
func TestRetryableSwitchover(t *testing.T) {
	fp := func(msg string) error { return status.Error(codes.FailedPrecondition, msg) }
	assert.True(t, retryableSwitchover(fp(`switchover so-1 of dc-a2/main failed: cluster is not healthy (NO_WRITABLE_MASTER on "dc-a2-db1"): switchover refused`)))
	assert.True(t, retryableSwitchover(fp("switchover so-1 of dc-a2/main failed: interrupted: the agent running it lost leadership")))
	assert.False(t, retryableSwitchover(fp("switchover so-1 of dc-a2/main failed: failover: switchover failed: target dc-a2-db2 is writable")))
	assert.False(t, retryableSwitchover(status.Error(codes.DeadlineExceeded, "switchover so-1 is still RUNNING after 30s; switchover refused")))
	assert.False(t, retryableSwitchover(errors.New("lost leadership")))
}
