package shardmap_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
)

// labTopology is the lab's layout: two cities, three DCs, one keyspace of
// 64 shards.
func labTopology() topology.Topology {
	t := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs: []topology.DC{
			{Name: "dc-a1", City: "city-a"},
			{Name: "dc-a2", City: "city-a"},
			{Name: "dc-b1", City: "city-b"},
		},
		Keyspaces: []topology.Keyspace{{
			Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64,
		}},
	}
	for i, dc := range t.DCs {
		t.Clusters = append(t.Clusters, topology.Cluster{Name: "main", DC: dc.Name, Instances: []topology.Instance{
			{Name: dc.Name + "-db1", Addr: fmt.Sprintf("127.0.0.1:%d", 3306+i)},
		}})
	}
	return t
}

// withShards returns the topology with the orders keyspace at n shards.
func withShards(topo topology.Topology, n int) (topology.Keyspace, topology.Topology) {
	topo.Keyspaces = []topology.Keyspace{topo.Keyspaces[0]}
	topo.Keyspaces[0].Shards = n
	return topo.Keyspaces[0], topo
}

// labMap is the default map of the orders keyspace with n shards.
func labMap(t testing.TB, n int) (shardmap.Map, topology.Topology) {
	t.Helper()
	ks, topo := withShards(labTopology(), n)
	require.NoError(t, topo.Validate())
	m := shardmap.New(ks, topo)
	require.NoError(t, m.Validate(topo))
	return m, topo
}

// reference finds the shards whose range holds p by scanning them all.
func reference(m shardmap.Map, p uint64) []shardmap.Shard {
	var out []shardmap.Shard
	for _, s := range m.Shards {
		if s.Contains(p) {
			out = append(out, s)
		}
	}
	return out
}

// probes are the points where a range problem shows: 0, the largest point,
// and every bound and its neighbours.
func probes(m shardmap.Map) []uint64 {
	out := []uint64{0, 1, math.MaxUint64, math.MaxUint64 / 2}
	for _, s := range m.Shards {
		out = append(out, s.Lo, s.Lo-1, s.Lo+1, s.Hi, s.Hi-1)
	}
	return out
}

// checkRoute asserts that r is the route of the single shard holding p.
func checkRoute(t testing.TB, m shardmap.Map, p uint64, r shardmap.Route) {
	t.Helper()
	want := reference(m, p)
	if len(want) != 1 {
		t.Fatalf("point %d: %d shards hold it in a map that compiled", p, len(want))
	}
	s := want[0]
	if r.Shard != s.ID || r.Owner != s.Owner || r.Backup != s.Backup || r.State != s.State || r.Revision != s.Revision || r.MapRevision != m.Revision {
		t.Fatalf("point %d: route %+v, want shard %+v", p, r, s)
	}
}
