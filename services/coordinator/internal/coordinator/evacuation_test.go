package coordinator_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func TestEvacuationAPI(t *testing.T) {
	st, cs := startCoords(t, 1)
	c := cs[0]
	leaderOf(t, cs)
	admin, viewer := as(t, adminToken), as(t, viewerToken)

	// A dry run returns the plan and stores nothing.
	dry, err := c.evac.Evacuate(admin, &drplanev1.EvacuateRequest{Dc: "dc-a1", DryRun: true, Parallel: 10})
	require.NoError(t, err)
	plan := dry.GetOperation()
	assert.True(t, plan.GetDryRun())
	// dc-a1 owns 22 of orders' 64 shards and 2 of users' 4.
	require.Len(t, plan.GetHandoffs(), 24)
	assert.Equal(t, int32(4), plan.GetTotals().GetWaves(), "10+10+2 orders, 2 users")
	var targets int32
	for _, tg := range plan.GetTargets() {
		targets += tg.GetShards()
		assert.NotEqual(t, "dc-a1", tg.GetDc())
	}
	assert.Equal(t, int32(24), targets)
	list, err := c.evac.ListOperations(viewer, &drplanev1.ListOperationsRequest{})
	require.NoError(t, err)
	assert.Empty(t, list.GetOperations())

	// Roles: a viewer reads, it does not evacuate.
	_, err = c.evac.Evacuate(viewer, &drplanev1.EvacuateRequest{Dc: "dc-a1"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")

	bad := []struct {
		name  string
		req   *drplanev1.EvacuateRequest
		code  drplanev1.ErrorCode
		field string
	}{
		{"unknown DC", &drplanev1.EvacuateRequest{Dc: "dc-x"}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "dc"},
		{"to itself", &drplanev1.EvacuateRequest{Dc: "dc-a1", To: "dc-a1"}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "to"},
		{"unknown target", &drplanev1.EvacuateRequest{Dc: "dc-a1", To: "dc-z"}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "to"},
		{"parallel", &drplanev1.EvacuateRequest{Dc: "dc-a1", Parallel: -1}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "parallel"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.evac.Evacuate(admin, tt.req)
			requireCode(t, err, tt.code, tt.field)
		})
	}

	// A shard frozen by an operator is not taken over.
	_, err = c.shards.SetShardState(admin, &drplanev1.SetShardStateRequest{Keyspace: "users", Shard: 0,
		State: drplanev1.ShardState_SHARD_STATE_FROZEN, Reason: "maintenance"})
	require.NoError(t, err)
	_, err = c.evac.Evacuate(admin, &drplanev1.EvacuateRequest{Dc: "dc-a1"})
	e := requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "dc")
	assert.Contains(t, e.Message, "frozen by an operator")
	_, err = c.shards.SetShardState(admin, &drplanev1.SetShardStateRequest{Keyspace: "users", Shard: 0,
		State: drplanev1.ShardState_SHARD_STATE_ACTIVE, Reason: "done"})
	require.NoError(t, err)

	// The evacuation is stored and run; no collector answers its barriers
	// here, so its first wave aborts after the catch-up timeout.
	started, err := c.evac.Evacuate(admin, &drplanev1.EvacuateRequest{Dc: "dc-a1", Parallel: 8, Reason: "maintenance"})
	require.NoError(t, err)
	id := started.GetOperationId()
	require.NotEmpty(t, id)
	assert.Equal(t, drplanev1.OperationState_OPERATION_STATE_PENDING, started.GetOperation().GetState())
	_, err = c.evac.Evacuate(admin, &drplanev1.EvacuateRequest{Dc: "dc-a1"})
	e = requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "dc")
	assert.Contains(t, e.Message, id)
	_, err = c.evac.Restore(admin, &drplanev1.RestoreRequest{Dc: "dc-a1"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "dc")

	// Watch it to its end.
	stream, err := c.evac.WatchOperation(viewer, &drplanev1.WatchOperationRequest{Id: id})
	require.NoError(t, err)
	var last *drplanev1.Operation
	aborted := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		last = resp.GetOperation()
		for _, h := range resp.GetDone() {
			assert.Equal(t, drplanev1.HandoffState_HANDOFF_STATE_ABORTED, h.GetState())
			aborted++
		}
	}
	require.NotNil(t, last)
	assert.Equal(t, drplanev1.OperationState_OPERATION_STATE_FAILED, last.GetState())
	assert.Contains(t, last.GetError(), "barrier")
	assert.Equal(t, 8, aborted, "the first wave's handoffs, each once")
	for _, s := range loadMap(t, st, "orders").Shards {
		assert.Equal(t, shardmap.Active, s.State, "every shard unfrozen at its owner")
		assert.Equal(t, s.Home, s.Owner)
	}

	// Finished operations are listed, and cannot be canceled.
	list, err = c.evac.ListOperations(viewer, &drplanev1.ListOperationsRequest{Kind: drplanev1.OperationKind_OPERATION_KIND_EVACUATE})
	require.NoError(t, err)
	require.Len(t, list.GetOperations(), 1)
	assert.Empty(t, list.GetOperations()[0].GetHandoffs())
	_, err = c.evac.CancelOperation(admin, &drplanev1.CancelOperationRequest{Id: id})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "id")
	_, err = c.evac.GetOperation(viewer, &drplanev1.GetOperationRequest{Id: "nope"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "id")

	// Resume runs it again; cancel then stops it between waves.
	res, err := c.evac.ResumeOperation(admin, &drplanev1.ResumeOperationRequest{Id: id, Reason: "retry"})
	require.NoError(t, err)
	assert.Equal(t, drplanev1.OperationState_OPERATION_STATE_PENDING, res.GetOperation().GetState())
	_, err = c.evac.ResumeOperation(admin, &drplanev1.ResumeOperationRequest{Id: id})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "id")
	_, err = c.evac.CancelOperation(admin, &drplanev1.CancelOperationRequest{Id: id, Reason: "enough"})
	require.NoError(t, err)
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		got, err := c.evac.GetOperation(viewer, &drplanev1.GetOperationRequest{Id: id})
		if err != nil {
			return err
		}
		switch s := got.GetOperation().GetState(); s {
		case drplanev1.OperationState_OPERATION_STATE_CANCELED, drplanev1.OperationState_OPERATION_STATE_FAILED:
			return nil
		default:
			return fmt.Errorf("operation is %s", s)
		}
	})
	for _, s := range loadMap(t, st, "orders").Shards {
		assert.Equal(t, shardmap.Active, s.State)
	}

	// Every call is audited.
	evs, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	actions := map[string]int{}
	for _, ev := range evs {
		actions[ev.Action]++
	}
	for _, a := range []string{"evacuation.request", "operation.start", "operation.finish", "operation.cancel", "operation.resume",
		"handoff.freeze", "handoff.abort", "dc.set_state"} {
		assert.Positive(t, actions[a], "no %s event (%v)", a, actions)
	}
}

func TestMoveShardIsTheSafeHandoffUnlessForced(t *testing.T) {
	st, cs := startCoords(t, 1)
	c := cs[0]
	leaderOf(t, cs)
	admin := as(t, adminToken)
	// No collector answers the barrier here: the safe move aborts and the
	// shard stays at its owner, unfrozen.
	_, err := c.shards.MoveShard(admin, &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 27, OwnerDc: "dc-a2", Reason: "safe"})
	e := requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "")
	assert.Contains(t, e.Message, "stays at dc-a1")
	s, _ := loadMap(t, st, "orders").Shard(27)
	assert.Equal(t, "dc-a1", s.Owner)
	assert.Equal(t, shardmap.Active, s.State)
	list, err := c.evac.ListOperations(as(t, viewerToken), &drplanev1.ListOperationsRequest{Kind: drplanev1.OperationKind_OPERATION_KIND_MOVE_SHARD})
	require.NoError(t, err)
	require.Len(t, list.GetOperations(), 1)
	assert.Equal(t, drplanev1.OperationState_OPERATION_STATE_FAILED, list.GetOperations()[0].GetState())

	// With force it is the raw flip, at once, audited as forced.
	_, err = c.shards.MoveShard(admin, &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 27, OwnerDc: "dc-a2", Reason: "forced", Force: true})
	require.NoError(t, err)
	s, _ = loadMap(t, st, "orders").Shard(27)
	assert.Equal(t, "dc-a2", s.Owner)
	assert.Empty(t, s.Fences, "a forced move fences nothing: no false divergence")
	evs, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	forced := 0
	for _, ev := range evs {
		if ev.Action == "shard.move" && ev.Params["force"] == "true" {
			forced++
		}
	}
	assert.Positive(t, forced)
	_, err = c.shards.MoveShard(admin, &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 27, OwnerDc: "dc-b1", Reason: "x", TimeoutSeconds: 301})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "timeout_seconds")
}
