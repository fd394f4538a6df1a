package cityfail

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// TestExactLossOnReturn: a failed-over DC comes back; its loss is counted
// only once its reship read its master's binlog to the end the HA agent
// observed after the return, and the settle time passed; then the
// divergence entries this failover fenced (not those of another handoff)
// are the exact loss, on the record and in the audit log, counted again
// when another entry appears.
func TestExactLossOnReturn(t *testing.T) {
	w := newWorld(t, 8, topology.Keyspace{Name: "orders"})
	ctx := t.Context()
	clk := &clock{now: w.now}
	log := zerolog.New(zerolog.NewTestWriter(t))
	f := New(Options{Store: w.st, Auto: true, ID: "leader", Actor: "coordinator:leader", Logger: log, Now: clk.Now})
	r := NewRunner(RunnerOptions{Flipper: f, ReturnSettle: 2 * time.Second, Logger: log})
	rec, err := f.Failover(ctx, w.fence, Request{DC: "dc-a1", Verdict: "DCLost"})
	require.NoError(t, err)
	require.Equal(t, Done, rec.State)
	_, err = w.st.PutMaster(ctx, state.MasterRecord{DC: "dc-a1", Cluster: "main", Instance: "dc-a1-db1", Addr: "127.0.0.1:3306", Term: 1}, -1, nil)
	require.NoError(t, err)
	record := func(id, op string) {
		_, err := divergence.Record(ctx, w.st, divergence.Entry{Origin: "dc-a1", RequestID: id, GTID: id[:len(id)-2], Keyspace: "orders",
			Shard: 1, Owner: "dc-b1", FenceOperation: op, DetectedBy: "reship@dc-a1", DetectedAt: clk.Now()})
		require.NoError(t, err)
	}
	record("1-1-9/1", rec.ID)
	record("1-1-7/1", rec.ID)
	record("1-1-3/1", "evacuate-older")
	get := func() Record {
		got, err := Get(ctx, w.st, rec.ID)
		require.NoError(t, err)
		return got
	}

	require.NoError(t, r.returnsOnce(ctx, w.fence))
	assert.Nil(t, get().Return, "the DC is not back")
	require.NoError(t, w.st.PutDCLease(ctx, state.DCLease{DC: "dc-a1", Agent: "agent"}, 0, nil))
	require.NoError(t, r.returnsOnce(ctx, w.fence))
	require.NotNil(t, get().Return)
	assert.True(t, get().Return.CaughtUpAt.IsZero(), "no observation of the master since the return")

	t.Log("the agent observes the master at 1-1-10; reship is at 1-1-8")
	clk.Add(time.Second)
	require.NoError(t, w.st.PutInstanceStatus(ctx, state.InstanceStatus{DC: "dc-a1", Cluster: "main", Name: "dc-a1-db1", Reachable: true,
		Role: state.RoleMaster, GTIDBinlogPos: "1-1-10", ObservedAt: clk.Now()}, 0))
	_, err = state.Put(ctx, w.st, w.st.Key("reship", "dc-a1", "main"), checkpoint{Position: "1-1-8"}, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)
	require.NoError(t, r.returnsOnce(ctx, w.fence))
	assert.True(t, get().Return.CaughtUpAt.IsZero(), "reship has not read to the end")
	_, err = state.Put(ctx, w.st, w.st.Key("reship", "dc-a1", "main"), checkpoint{Position: "1-1-10"}, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)
	require.NoError(t, r.returnsOnce(ctx, w.fence))
	require.False(t, get().Return.CaughtUpAt.IsZero())
	assert.Nil(t, get().Exact, "settling")

	clk.Add(2 * time.Second)
	require.NoError(t, r.returnsOnce(ctx, w.fence))
	x := get().Exact
	require.NotNil(t, x)
	assert.Equal(t, 2, x.RequestsTotal)
	require.Len(t, x.Requests, 2)
	assert.Equal(t, "1-1-7/1", x.Requests[0].RequestID)
	assert.Equal(t, "1-1-7", x.Requests[0].GTID)
	assert.Equal(t, "dc-a1:1-1-7/1", x.Requests[0].DivergenceID)
	events := outbox(t, w.st, ActionExact)
	require.Len(t, events, 1)
	assert.Equal(t, "1-1-7/1@1-1-7,1-1-9/1@1-1-9", events[0].Params["exact_request_ids"])
	assert.EqualValues(t, 2, events[0].RPOTransactions)

	require.NoError(t, r.returnsOnce(ctx, w.fence))
	assert.Len(t, outbox(t, w.st, ActionExact), 1, "counted once while nothing changes")
	record("1-1-10/1", rec.ID)
	require.NoError(t, r.returnsOnce(ctx, w.fence))
	assert.Equal(t, 3, get().Exact.RequestsTotal, "a late entry is counted")
	assert.Len(t, outbox(t, w.st, ActionExact), 2)
}
