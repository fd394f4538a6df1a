package state_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
)

func TestReplicationRecords(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, w := range []state.Watermark{
		{DC: "dc-b1", Origin: "dc-a1", Keyspace: "orders", Shard: 7, RequestID: "0-1-9/7", GTID: "0-1-9", CommitTime: at, AppliedAt: at},
		{DC: "dc-b1", Origin: "dc-a2", Keyspace: "orders", Shard: 7, RequestID: "1-2-3/7", GTID: "1-2-3", CommitTime: at, AppliedAt: at},
		{DC: "dc-a1", Origin: "dc-b1", Keyspace: "orders", Shard: 12, RequestID: "2-3-4/12", GTID: "2-3-4", CommitTime: at, AppliedAt: at},
	} {
		_, err := state.Put(ctx, st, st.WatermarkKey(w.DC, w.Origin, w.Keyspace, w.Shard), w, state.PutOptions{})
		require.NoError(t, err)
	}
	assert.Equal(t, "/test/"+t.Name()+"/watermarks/dc-b1/dc-a1/orders/7", st.WatermarkKey("dc-b1", "dc-a1", "orders", 7))

	all, err := st.Watermarks(ctx, "", "")
	require.NoError(t, err)
	assert.Len(t, all, 3)
	inB1, err := st.Watermarks(ctx, "dc-b1", "")
	require.NoError(t, err)
	assert.Len(t, inB1, 2)
	one, err := st.Watermarks(ctx, "dc-b1", "dc-a2")
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, "1-2-3/7", one[0].RequestID)
	assert.Equal(t, at, one[0].AppliedAt)

	s := state.ReplStats{DC: "dc-b1", Origin: "dc-a1", Collector: "c1", Applied: 10, LagP99Ms: 4.5, UpdatedAt: at}
	_, err = state.Put(ctx, st, st.ReplStatsKey(s.DC, s.Origin), s, state.PutOptions{})
	require.NoError(t, err)
	stats, err := st.ReplStatsList(ctx, "dc-b1")
	require.NoError(t, err)
	assert.Equal(t, []state.ReplStats{s}, stats)
	stats, err = st.ReplStatsList(ctx, "dc-a1")
	require.NoError(t, err)
	assert.Empty(t, stats)
}
