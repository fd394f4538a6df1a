package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

// Tokens of the test coordinators.
const (
	adminToken  = "admin-token"
	viewerToken = "viewer-token"
	callTimeout = 20 * time.Second
)

// labTopology is the lab's layout: two cities, three DCs with cluster
// "main" (two instances each), the orders keyspace of 64 HASH shards and
// the users keyspace of 4 RANGE shards.
func labTopology() topology.Topology {
	t := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Keyspaces: []topology.Keyspace{
			{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64},
			{Name: "users", Cluster: "main", Database: "shop", Table: "users", ShardKey: "id", Shards: 4},
		},
	}
	for i, dc := range t.DCs {
		t.Clusters = append(t.Clusters, topology.Cluster{Name: "main", DC: dc.Name, Instances: []topology.Instance{
			{Name: dc.Name + "-db1", Addr: fmt.Sprintf("127.0.0.1:%d", 3306+10*i)},
			{Name: dc.Name + "-db2", Addr: fmt.Sprintf("127.0.0.1:%d", 3307+10*i)},
		}})
	}
	return t
}

// seed stores the topology, the default orders map, a RANGE map for users
// and a master record per DC (db1 everywhere).
func seed(t testing.TB, st *state.Store) {
	t.Helper()
	ctx := context.Background()
	topo := labTopology()
	_, err := st.PutTopology(ctx, topo, 0)
	require.NoError(t, err)
	orders, _ := topo.Keyspace("orders")
	_, err = shardmap.Save(ctx, st, shardmap.New(orders, topo), 0, nil, topo)
	require.NoError(t, err)
	users, _ := topo.Keyspace("users")
	um := shardmap.New(users, topo)
	um.Function = shardmap.Range
	// users: [0,1000) [1000,2000) [2000,3000) [3000,2^64)
	for i := range um.Shards {
		um.Shards[i].Lo = uint64(i * 1000) //nolint:gosec // small test values
		um.Shards[i].Hi = uint64((i + 1) * 1000)
	}
	um.Shards[len(um.Shards)-1].Hi = 0
	_, err = shardmap.Save(ctx, st, um, 0, nil, topo)
	require.NoError(t, err)
	for _, cl := range topo.Clusters {
		m := cl.Instances[0]
		_, err := st.PutMaster(ctx, state.MasterRecord{DC: cl.DC, Cluster: cl.Name, Instance: m.Name, Addr: m.Addr, Term: 1,
			UpdatedAt: time.Now().UTC(), Reason: "test"}, 0, nil)
		require.NoError(t, err)
	}
}

// coord is one running coordinator with clients.
type coord struct {
	id     string
	node   *coordinator.Node
	shards drplanev1.ShardServiceClient
	evac   drplanev1.EvacuationServiceClient
	base   string
	stop   func()
}

// startCoord runs a coordinator over st until stop or the test ends.
func startCoord(t testing.TB, st *state.Store, id string) *coord {
	t.Helper()
	n, err := coordinator.NewNode(coordinator.NodeOptions{
		Store: st, ID: id, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Tokens: []auth.Token{
			{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
			{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
			{Name: "oncall", Role: "operator", SHA256: auth.Hash(operatorToken)},
		},
		LeaderTTL: 2 * time.Second, Logger: zerolog.Nop(),
		Handoff: coordinator.HandoffOptions{RouterGrace: 100 * time.Millisecond, CatchUp: 500 * time.Millisecond},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	conn, err := grpc.NewClient(n.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	c := &coord{
		id: id, node: n, shards: drplanev1.NewShardServiceClient(conn), evac: drplanev1.NewEvacuationServiceClient(conn),
		base: "http://" + n.Server.HTTPAddr(),
	}
	stopped := false
	c.stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = conn.Close()
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(callTimeout):
			t.Error("coordinator did not stop")
		}
	}
	t.Cleanup(c.stop)
	check.For(t, callTimeout, 5*time.Millisecond, func() error { return check.That(n.CacheReady() == nil, "n.CacheReady() == nil") })
	return c
}

// startCoords seeds a fresh etcd and runs n coordinators on it.
func startCoords(t testing.TB, n int) (*state.Store, []*coord) {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "")
	seed(t, st)
	cs := make([]*coord, n)
	for i := range cs {
		cs[i] = startCoord(t, st, fmt.Sprintf("coord-%d", i+1))
	}
	return st, cs
}

// leaderOf waits until one of cs leads and returns it and the others.
func leaderOf(t testing.TB, cs []*coord) (*coord, []*coord) {
	t.Helper()
	var lead *coord
	check.For(t, callTimeout, 5*time.Millisecond, func() error {
		for _, c := range cs {
			if c.node.Leader.IsLeader() {
				lead = c
				return nil
			}
		}
		return errors.New("no coordinator leads")
	})
	var rest []*coord
	for _, c := range cs {
		if c != lead {
			rest = append(rest, c)
		}
	}
	return lead, rest
}

func as(t testing.TB, token string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// rest makes a REST call and returns the status code and body.
func (c *coord) rest(t testing.TB, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: callTimeout}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// events returns the outbox events of one action.
func events(t testing.TB, st *state.Store, action string) []audit.Event {
	t.Helper()
	all, err := audit.NewOutbox(st).List(context.Background(), 0)
	require.NoError(t, err)
	var out []audit.Event
	for _, e := range all {
		require.NoError(t, e.Validate())
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func loadMap(t testing.TB, st *state.Store, keyspace string) shardmap.Map {
	t.Helper()
	m, err := shardmap.Load(context.Background(), st, keyspace)
	require.NoError(t, err)
	return m
}
