package ops_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

const waitFor = 15 * time.Second

// labTopology is two cities, three DCs, cluster "main" everywhere and the
// orders keyspace of 8 shards.
func labTopology() topology.Topology {
	t := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Keyspaces: []topology.Keyspace{{
			Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 8,
		}},
	}
	for i, dc := range t.DCs {
		t.Clusters = append(t.Clusters, topology.Cluster{Name: "main", DC: dc.Name, Instances: []topology.Instance{
			{Name: dc.Name + "-db1", Addr: fmt.Sprintf("127.0.0.1:%d", 3306+i)},
		}})
	}
	return t
}

// seed stores the topology and the default orders map.
func seed(t *testing.T, st *state.Store) shardmap.Map {
	t.Helper()
	topo := labTopology()
	_, err := st.PutTopology(t.Context(), topo, 0)
	require.NoError(t, err)
	ks, _ := topo.Keyspace("orders")
	_, err = shardmap.Save(t.Context(), st, shardmap.New(ks, topo), 0, nil, topo)
	require.NoError(t, err)
	m, err := shardmap.Load(t.Context(), st, "orders")
	require.NoError(t, err)
	return m
}

// node is one coordinator's leader and queue.
type node struct {
	l    *leader.Leader
	q    *ops.Queue
	stop func()
}

type nodeOpts struct {
	wait      time.Duration
	now       func() time.Time
	prune     time.Duration
	retention time.Duration
}

// startNode runs a leader candidate and its queue until stop or the test
// ends.
func startNode(t *testing.T, st *state.Store, id string, o nodeOpts) *node {
	t.Helper()
	l, err := leader.New(leader.Options{Store: st, ID: id, TTL: 2 * time.Second, RetryDelay: 50 * time.Millisecond, Logger: zerolog.Nop()})
	require.NoError(t, err)
	q := ops.New(ops.Options{Store: st, Leader: l, WaitTimeout: o.wait, Now: o.now, PruneEvery: o.prune,
		Retention: o.retention, RetryDelay: 20 * time.Millisecond, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { assert.NoError(t, l.Run(ctx)); done <- struct{}{} }()
	go func() { assert.NoError(t, q.Run(ctx)); done <- struct{}{} }()
	stopped := false
	n := &node{l: l, q: q}
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(waitFor):
				t.Error("node did not stop")
				return
			}
		}
	}
	t.Cleanup(n.stop)
	return n
}

// idleQueue is a queue with a leader that never campaigns: it can queue
// and wait, nothing more.
func idleQueue(t *testing.T, st *state.Store, wait time.Duration) *ops.Queue {
	t.Helper()
	l, err := leader.New(leader.Options{Store: st, ID: "idle", Logger: zerolog.Nop()})
	require.NoError(t, err)
	return ops.New(ops.Options{Store: st, Leader: l, WaitTimeout: wait, Logger: zerolog.Nop()})
}

// events returns the outbox events, oldest first.
func events(t *testing.T, st *state.Store) []audit.Event {
	t.Helper()
	evs, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	return evs
}

func loadMap(t *testing.T, st *state.Store) shardmap.Map {
	t.Helper()
	m, err := shardmap.Load(t.Context(), st, "orders")
	require.NoError(t, err)
	return m
}
