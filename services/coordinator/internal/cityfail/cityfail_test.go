package cityfail

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

type world struct {
	st    *state.Store
	topo  topology.Topology
	fence state.Fence
	now   time.Time
}

// newWorld stores 3 DCs (dc-a1, dc-a2 in city-a; dc-b1 in city-b), the
// keyspaces given (each with shards shards) and their default maps, and
// the leases of dc-a2 and dc-b1: dc-a1 is the lost one.
func newWorld(t testing.TB, shards int, keyspaces ...topology.Keyspace) *world {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	ctx := context.Background()
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
	}
	for i, dc := range topo.DCs {
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: "127.0.0.1:" + strconv.Itoa(3306+i)}}})
	}
	for _, ks := range keyspaces {
		ks.Cluster, ks.Database, ks.Table, ks.ShardKey, ks.Shards = "main", "shop", ks.Name, "user_id", shards
		topo.Keyspaces = append(topo.Keyspaces, ks)
	}
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	for _, ks := range topo.Keyspaces {
		_, err = shardmap.Save(ctx, st, shardmap.New(ks, topo), 0, nil, topo)
		require.NoError(t, err)
	}
	for _, dc := range []string{"dc-a2", "dc-b1"} {
		require.NoError(t, st.PutDCLease(ctx, state.DCLease{DC: dc, Agent: "agent"}, 0, nil))
	}
	resp, err := st.Client().Put(ctx, st.Key("leader-fence"), "me")
	require.NoError(t, err)
	return &world{st: st, topo: topo, fence: state.Fence{Key: st.Key("leader-fence"), Rev: resp.Header.Revision},
		now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (w *world) flipper(t testing.TB, auto bool, l Ledger) *Flipper {
	return New(Options{Store: w.st, Ledger: l, Auto: auto, Actor: "coordinator:test",
		Logger: zerolog.New(zerolog.NewTestWriter(t)), Now: func() time.Time { return w.now }})
}

// fakeLedger answers Missing from a fixed list (the ledger's query is
// tested in package ledger).
type fakeLedger map[string][]Missing

func (f fakeLedger) Missing(_ context.Context, origin, target string, limit int) ([]Missing, int64, error) {
	ms := f[origin+">"+target]
	return ms[:min(limit, len(ms))], int64(len(ms)), nil
}

func TestFailoverFlipsEveryShardFenced(t *testing.T) {
	w := newWorld(t, 16, topology.Keyspace{Name: "orders"}, topology.Keyspace{Name: "carts"})
	ctx := context.Background()
	before, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	var owned []shardmap.Shard
	for _, s := range before.Shards {
		if s.Owner == "dc-a1" {
			owned = append(owned, s)
		}
	}
	require.NotEmpty(t, owned)
	// dc-b1 applied dc-a1's requests up to 0-1-50 for the first owned shard.
	wm := state.Watermark{DC: owned[0].Backup, Origin: "dc-a1", Keyspace: "orders", Shard: int32(owned[0].ID),
		GTID: "0-1-50", Position: "0-1-50", CommitTime: w.now.Add(-3 * time.Second)}
	_, err = state.Put(ctx, w.st, w.st.WatermarkKey(wm.DC, wm.Origin, wm.Keyspace, wm.Shard), wm, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)
	_, err = state.Put(ctx, w.st, w.st.Key("repl", owned[0].Backup, "dc-a1"), state.ReplStats{DC: owned[0].Backup, Origin: "dc-a1",
		LastAppliedAt: w.now.Add(-2 * time.Second), LagP99Ms: 5}, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)
	l := fakeLedger{"dc-a1>" + owned[0].Backup: {{RequestID: "0-1-51/" + strconv.Itoa(owned[0].ID), Keyspace: "orders", Shard: int32(owned[0].ID)}}}

	rec, err := w.flipper(t, true, l).Failover(ctx, w.fence, Request{DC: "dc-a1", Verdict: "DCLost", LeaseGoneSince: w.now.Add(-time.Second)})
	require.NoError(t, err)
	assert.Equal(t, Done, rec.State)
	assert.Equal(t, rec.Flipped(), len(rec.Shards))
	assert.Equal(t, []string{"0-1-51/" + strconv.Itoa(owned[0].ID)}, rec.Estimate.Requests)
	assert.Equal(t, time.Second+5*time.Millisecond, time.Duration(rec.Estimate.MaxLagBound))
	for _, ks := range []string{"orders", "carts"} {
		m, err := shardmap.Load(ctx, w.st, ks)
		require.NoError(t, err)
		for _, s := range m.Shards {
			require.NotEqual(t, "dc-a1", s.Owner, "%s shard %d still owned by the lost DC", ks, s.ID)
			if s.Home != "dc-a1" {
				continue
			}
			assert.Equal(t, "dc-a1", s.Backup, "the lost DC becomes the backup")
			f, ok := s.FenceOf("dc-a1")
			require.True(t, ok)
			assert.Equal(t, rec.ID, f.OperationID)
			if ks == "orders" && s.ID == owned[0].ID {
				assert.Equal(t, "0-1-50", f.Watermark)
				_, div := shardmap.Diverged(s, "dc-a1", "0-1-50")
				assert.False(t, div, "applied at the new owner: not divergence")
				_, div = shardmap.Diverged(s, "dc-a1", "0-1-51")
				assert.True(t, div, "captured after the fence: divergence")
				sf := rec.Shards[0]
				assert.Equal(t, 1, sf.LedgerMissing)
				assert.Equal(t, time.Second+5*time.Millisecond, time.Duration(sf.LagBound))
			}
		}
	}
	topo, _, err := w.st.Topology(ctx)
	require.NoError(t, err)
	dc, _ := topo.DC("dc-a1")
	assert.Equal(t, topology.DCDown, dc.StateOf())
	stored, err := Get(ctx, w.st, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, rec.Estimate, stored.Estimate)
	events, err := audit.NewOutbox(w.st).List(ctx, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, ActionFlip, events[0].Action)
	assert.Equal(t, "1", events[0].Params["estimate_requests"])

	_, err = w.flipper(t, true, nil).Failover(ctx, w.fence, Request{DC: "dc-a1"})
	require.ErrorIs(t, err, ErrNothingToFlip, "a second declaration finds nothing to flip")
}

func TestPolicyHoldsFlips(t *testing.T) {
	off := false
	w := newWorld(t, 8, topology.Keyspace{Name: "orders", MaxRPO: "500ms"}, topology.Keyspace{Name: "carts", AutoCityFailover: &off},
		topology.Keyspace{Name: "notes"})
	ctx := context.Background()
	owner := func(ks string) map[string]int {
		m, err := shardmap.Load(ctx, w.st, ks)
		require.NoError(t, err)
		n := map[string]int{}
		for _, s := range m.Shards {
			n[s.Owner]++
		}
		return n
	}
	require.NoError(t, w.st.PutKillSwitch(ctx, state.KillSwitch{Scope: "dc/dc-a1", Reason: "test", SetBy: "t", SetAt: w.now}))
	rec, err := w.flipper(t, true, nil).Failover(ctx, w.fence, Request{DC: "dc-a1", LeaseGoneSince: w.now})
	require.NoError(t, err)
	assert.Equal(t, Held, rec.State)
	assert.Contains(t, rec.Held, "kill switch dc/dc-a1")
	assert.Zero(t, rec.Flipped())
	assert.NotZero(t, owner("notes")["dc-a1"], "a kill switch holds every shard")
	events, err := audit.NewOutbox(w.st).List(ctx, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, ActionHeld, events[0].Action)
	assert.Equal(t, audit.OutcomeDenied, events[0].Outcome)
	require.NoError(t, w.st.DeleteKillSwitch(ctx, "dc/dc-a1"))

	rec, err = w.flipper(t, true, nil).Failover(ctx, w.fence, Request{DC: "dc-a1", LeaseGoneSince: w.now})
	require.NoError(t, err)
	assert.Equal(t, Held, rec.State)
	assert.Zero(t, owner("notes")["dc-a1"], "no budget, auto on: flipped")
	assert.NotZero(t, owner("orders")["dc-a1"], "loss window unknown, budget 500ms: held")
	assert.NotZero(t, owner("carts")["dc-a1"], "auto_city_failover off: held")
	for _, s := range rec.Shards {
		switch s.Keyspace {
		case "orders":
			assert.Contains(t, s.Held, "max_rpo")
		case "carts":
			assert.Contains(t, s.Held, "auto_city_failover is off")
		}
	}

	t.Log("the operator accepts the loss")
	rec, err = w.flipper(t, true, nil).Failover(ctx, w.fence, Request{DC: "dc-a1", Operator: "ops", AcceptLoss: true})
	require.NoError(t, err)
	assert.Equal(t, Done, rec.State)
	assert.Equal(t, "operator:ops", rec.Trigger)
	events, err = audit.NewOutbox(w.st).List(ctx, 0)
	require.NoError(t, err)
	var actors []string
	for _, e := range events {
		if e.Action == ActionFlip && e.Params["trigger"] == "operator:ops" {
			actors = append(actors, e.Actor)
		}
	}
	assert.Equal(t, []string{"token:ops"}, actors, "the operator's flip is audited under their token, as the API's events are")
	for _, ks := range []string{"orders", "carts", "notes"} {
		assert.Zero(t, owner(ks)["dc-a1"], ks)
	}

	t.Log("a deposed leader flips nothing")
	w2 := newWorld(t, 8, topology.Keyspace{Name: "orders"})
	rec, err = w2.flipper(t, true, nil).Failover(ctx, state.Fence{Key: w2.fence.Key, Rev: w2.fence.Rev + 1000}, Request{DC: "dc-a1"})
	require.Error(t, err)
	assert.Equal(t, Failed, rec.State)
}

// BenchmarkFlip1024 flips the shards a lost DC owns (1,026 of 3,072 shards
// in 3 keyspaces over 3 DCs) on the test etcd: the time from the
// failover's start to its last shard-map write.
func BenchmarkFlip1024(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		w := newWorld(b, 1024, topology.Keyspace{Name: "orders"}, topology.Keyspace{Name: "carts"}, topology.Keyspace{Name: "notes"})
		f := w.flipper(b, true, nil)
		f.o.Now = time.Now
		b.StartTimer()
		rec, err := f.Failover(context.Background(), w.fence, Request{DC: "dc-a1"})
		if err != nil || rec.Flipped() < 1024 {
			b.Fatalf("flipped %d: %v", rec.Flipped(), err)
		}
		b.ReportMetric(float64(time.Duration(rec.FlipTook).Milliseconds()), "flip-ms")
	}
}
