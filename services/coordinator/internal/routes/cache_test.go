package routes_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/routes"
)

const waitFor = 10 * time.Second

func topo() topology.Topology {
	return topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: "dc-a1", Instances: []topology.Instance{{Name: "a1-db1", Addr: "127.0.0.1:3306"}}},
			{Name: "main", DC: "dc-b1", Instances: []topology.Instance{{Name: "b1-db1", Addr: "127.0.0.1:4306"}}},
			{Name: "side", DC: "dc-a1", Instances: []topology.Instance{{Name: "a1-side1", Addr: "127.0.0.1:5306"}}},
			{Name: "side", DC: "dc-b1", Instances: []topology.Instance{{Name: "b1-side1", Addr: "127.0.0.1:6306"}}},
		},
		Keyspaces: []topology.Keyspace{
			{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 8},
			{Name: "carts", Cluster: "side", Database: "shop", Table: "carts", ShardKey: "user_id", Shards: 2},
		},
	}
}

func putMaster(t *testing.T, st *state.Store, dc, cluster, inst string, term int64) {
	t.Helper()
	_, err := st.PutMaster(t.Context(), state.MasterRecord{DC: dc, Cluster: cluster, Instance: inst, Addr: "127.0.0.1:1", Term: term}, -1, nil)
	require.NoError(t, err)
}

func saveMap(t *testing.T, st *state.Store, tp topology.Topology, keyspace string) {
	t.Helper()
	ks, ok := tp.Keyspace(keyspace)
	require.True(t, ok)
	_, err := shardmap.Save(t.Context(), st, shardmap.New(ks, tp), 0, nil, tp)
	require.NoError(t, err)
}

func run(t *testing.T, st *state.Store) *routes.Cache {
	t.Helper()
	c := routes.New(routes.Options{Store: st, RetryDelay: 20 * time.Millisecond, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("cache did not stop")
		}
	})
	select {
	case <-c.Ready():
	case <-time.After(waitFor):
		t.Fatal("cache not ready")
	}
	return c
}

func TestCacheFollowsEtcd(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	tp := topo()
	_, err := st.PutTopology(t.Context(), tp, 0)
	require.NoError(t, err)
	saveMap(t, st, tp, "orders")
	putMaster(t, st, "dc-a1", "main", "a1-db1", 1)
	putMaster(t, st, "dc-b1", "main", "b1-db1", 1)
	c := run(t, st)

	e, ok := c.Entry("orders")
	require.True(t, ok)
	assert.Equal(t, 8, e.Table.Len())
	assert.Equal(t, e.Map.Revision, e.Table.Revision())
	m, ok := e.Master("dc-b1")
	require.True(t, ok)
	assert.Equal(t, "b1-db1", m.Instance)
	_, ok = c.Entry("carts")
	assert.False(t, ok, "a keyspace without a stored map has no entry")

	sub := c.Subscribe()
	defer sub.Close()
	changed := func() {
		t.Helper()
		select {
		case <-sub.C():
		case <-time.After(waitFor):
			t.Fatal("no change notified")
		}
	}

	// A map change: new entry, new table.
	cur, err := shardmap.Load(t.Context(), st, "orders")
	require.NoError(t, err)
	next, err := shardmap.SetShardState(cur, 3, shardmap.Frozen)
	require.NoError(t, err)
	rev, err := shardmap.Save(t.Context(), st, next, cur.Revision, nil, tp)
	require.NoError(t, err)
	changed()
	check.For(t, waitFor, 2*time.Millisecond, func() error {
		e2, _ := c.Entry("orders")
		return check.That(e2.Map.Revision == rev, "e2.Map.Revision = %v, want rev", e2.Map.Revision)
	})
	e2, _ := c.Entry("orders")
	r, ok := e2.Table.Shard(3)
	require.True(t, ok)
	assert.Equal(t, shardmap.Frozen, r.State)

	// A master of another cluster leaves the orders entry as it is; the
	// carts map shows up once stored.
	putMaster(t, st, "dc-a1", "side", "a1-side1", 1)
	saveMap(t, st, tp, "carts")
	changed()
	check.For(t, waitFor, 2*time.Millisecond, func() error {
		carts, ok := c.Entry("carts")
		if !ok {
			return check.That(false, "carts shows up with its cluster's master")
		}
		_, ok = carts.Master("dc-a1")
		return check.That(ok, "carts shows up with its cluster's master")
	})
	e3, _ := c.Entry("orders")
	assert.Same(t, e2, e3, "orders did not change")

	// A new master of the orders cluster: a new entry, the same table.
	putMaster(t, st, "dc-a1", "main", "a1-db2", 2)
	check.For(t, waitFor, 2*time.Millisecond, func() error {
		e4, _ := c.Entry("orders")
		m, _ := e4.Master("dc-a1")
		return check.That(m.Instance == "a1-db2" && m.Term == 2, "m.Instance == \"a1-db2\" && m.Term == 2")
	})
	e4, _ := c.Entry("orders")
	assert.Same(t, e3.Table, e4.Table, "a master change does not recompile the table")

	// A keyspace removed from the topology disappears.
	tp2 := tp
	tp2.Keyspaces = tp.Keyspaces[:1]
	_, err = st.PutTopology(t.Context(), tp2, -1)
	require.NoError(t, err)
	check.For(t, waitFor, 2*time.Millisecond, func() error { _, ok := c.Entry("carts"); return check.That(!ok, "!ok") })
	assert.Len(t, c.Entries(), 1)
}

func TestReplaceServesFixedState(t *testing.T) {
	c := routes.New(routes.Options{})
	tp := topo()
	ks, _ := tp.Keyspace("orders")
	m := shardmap.New(ks, tp)
	m.Revision = 9
	for i := range m.Shards {
		m.Shards[i].Revision = 9
	}
	c.Replace(&tp, []shardmap.Map{m}, map[string]routes.Master{
		"k": {MasterRecord: state.MasterRecord{DC: "dc-a1", Cluster: "main", Instance: "a1-db1"}, Revision: 3},
	})
	select {
	case <-c.Ready():
	default:
		t.Fatal("Replace makes the cache ready")
	}
	e, ok := c.Entry("orders")
	require.True(t, ok)
	r, err := e.Table.LookupString("42")
	require.NoError(t, err)
	assert.Equal(t, int64(9), r.MapRevision)
	_, ok = e.Master("dc-a1")
	assert.True(t, ok)
}
