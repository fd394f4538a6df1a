package divergence_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

func TestRecordOnceWithItsAuditEvent(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	e := divergence.Entry{
		Origin: "dc-a1", RequestID: "0-1-11/3", GTID: "0-1-11", Keyspace: "orders", Shard: 3, Owner: "dc-b1",
		FenceWatermark: "0-1-10", FenceOperation: "op-1", DetectedBy: "reship@dc-a1",
		DetectedAt: time.Now().UTC(), Rows: 1, Change: []byte{1, 2, 3},
	}
	created, err := divergence.Record(ctx, st, e)
	require.NoError(t, err)
	require.True(t, created)
	// Refused again (a redelivery, the collector side): stored once.
	e2 := e
	e2.DetectedBy = "collector@dc-b1"
	created, err = divergence.Record(ctx, st, e2)
	require.NoError(t, err)
	require.False(t, created)

	list, err := divergence.List(ctx, st, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "reship@dc-a1", list[0].DetectedBy)
	require.Equal(t, divergence.Open, list[0].State)
	require.Equal(t, []byte{1, 2, 3}, list[0].Change)

	got, err := divergence.Get(ctx, st, "dc-a1:0-1-11/3")
	require.NoError(t, err)
	require.Equal(t, "0-1-11", got.GTID)
	_, err = divergence.Get(ctx, st, "nonsense")
	require.ErrorIs(t, err, state.ErrNotFound)

	evs, err := audit.NewOutbox(st).List(ctx, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1, "one audit event per entry")
	require.Equal(t, divergence.ActionRecorded, evs[0].Action)
	require.Equal(t, "orders/3", evs[0].Target)
	require.Equal(t, "0-1-11/3", evs[0].Params["request_id"])
}
