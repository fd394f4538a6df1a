package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// requireCode asserts an API error's gRPC code, catalog code and field.
func requireCode(t *testing.T, err error, code drplanev1.ErrorCode, field string) *apierr.Error {
	t.Helper()
	require.Error(t, err)
	assert.Equal(t, apierr.GRPCCode(code), status.Code(err), "%v", err)
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, code, e.Code, "%v", err)
	assert.Equal(t, field, e.Field, "%v", err)
	return e
}

func TestRouteReads(t *testing.T) {
	_, cs := startCoords(t, 1)
	c := cs[0]
	ctx := as(t, viewerToken)

	// "42" is in shard 27 of the default 64-shard map (see pkg/shardmap),
	// owned round-robin by dc-a1 with its backup in the other city.
	resp, err := c.shards.Route(ctx, &drplanev1.RouteRequest{Keyspace: "orders", Key: "42"})
	require.NoError(t, err)
	r := resp.GetRoute()
	assert.Equal(t, int32(27), r.GetShard())
	assert.Equal(t, "dc-a1", r.GetOwnerDc())
	assert.Equal(t, "dc-b1", r.GetBackupDc())
	assert.Equal(t, drplanev1.ShardState_SHARD_STATE_ACTIVE, r.GetState())
	assert.Equal(t, "dc-a1-db1", r.GetMaster().GetInstance())
	assert.Equal(t, "127.0.0.1:3306", r.GetMaster().GetAddr())
	assert.Equal(t, "main", r.GetMaster().GetCluster())
	assert.Positive(t, r.GetMapRevision())
	assert.Equal(t, r.GetMapRevision(), r.GetShardRevision(), "every shard was stored by the first write")

	// BatchRoute answers key by key, like Route.
	keys := []string{"42", "1", "user-1", ""}
	batch, err := c.shards.BatchRoute(ctx, &drplanev1.BatchRouteRequest{Keyspace: "orders", Keys: keys})
	require.NoError(t, err)
	require.Len(t, batch.GetRoutes(), len(keys))
	for i, k := range keys {
		one, err := c.shards.Route(ctx, &drplanev1.RouteRequest{Keyspace: "orders", Key: k})
		require.NoError(t, err)
		assert.Equal(t, one.GetRoute().GetShard(), batch.GetRoutes()[i].GetShard(), "key %q", k)
	}

	list, err := c.shards.ListShards(ctx, &drplanev1.ListShardsRequest{Keyspace: "orders"})
	require.NoError(t, err)
	tbl := list.GetTable()
	assert.Equal(t, "HASH", tbl.GetFunction())
	assert.Equal(t, "main", tbl.GetCluster())
	require.Len(t, tbl.GetShards(), 64)
	assert.Equal(t, "0", tbl.GetShards()[0].GetLo())
	assert.Equal(t, "0", tbl.GetShards()[63].GetHi(), "the last range ends at 2^64")
	require.Len(t, tbl.GetMasters(), 3)
	assert.Equal(t, "dc-a1", tbl.GetMasters()[0].GetDc())

	got, err := c.shards.GetShard(ctx, &drplanev1.GetShardRequest{Keyspace: "orders", Shard: 27})
	require.NoError(t, err)
	assert.Equal(t, tbl.GetShards()[27].GetLo(), got.GetShard().GetLo())
	assert.Equal(t, "dc-a1-db1", got.GetRoute().GetMaster().GetInstance())

	// RANGE keyspace: the decimal value decides.
	resp, err = c.shards.Route(ctx, &drplanev1.RouteRequest{Keyspace: "users", Key: "1500"})
	require.NoError(t, err)
	assert.Equal(t, int32(1), resp.GetRoute().GetShard())
	assert.Equal(t, "dc-a2", resp.GetRoute().GetOwnerDc())

	bad := []struct {
		name  string
		call  func() error
		code  drplanev1.ErrorCode
		field string
	}{
		{"unknown keyspace", func() error {
			_, err := c.shards.Route(ctx, &drplanev1.RouteRequest{Keyspace: "carts", Key: "1"})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "keyspace"},
		{"no keyspace", func() error {
			_, err := c.shards.ListShards(ctx, &drplanev1.ListShardsRequest{})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "keyspace"},
		{"range key not a number", func() error {
			_, err := c.shards.Route(ctx, &drplanev1.RouteRequest{Keyspace: "users", Key: "-1"})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "key"},
		{"bad key in a batch", func() error {
			_, err := c.shards.BatchRoute(ctx, &drplanev1.BatchRouteRequest{Keyspace: "users", Keys: []string{"1", "x"}})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "keys[1]"},
		{"empty batch", func() error {
			_, err := c.shards.BatchRoute(ctx, &drplanev1.BatchRouteRequest{Keyspace: "orders"})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "keys"},
		{"unknown shard", func() error {
			_, err := c.shards.GetShard(ctx, &drplanev1.GetShardRequest{Keyspace: "orders", Shard: 64})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "shard"},
		{"no token", func() error {
			_, err := c.shards.Route(as(t, ""), &drplanev1.RouteRequest{Keyspace: "orders", Key: "1"})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, ""},
		{"evacuation to the DC itself", func() error {
			_, err := c.evac.Evacuate(as(t, adminToken), &drplanev1.EvacuateRequest{Dc: "dc-a1", To: "dc-a1"})
			return err
		}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "to"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) { requireCode(t, tt.call(), tt.code, tt.field) })
	}
}

// watcher follows WatchRoutes and keeps the latest orders table.
type watcher struct {
	mu     sync.Mutex
	latest *drplanev1.RoutingTable
	seen   chan struct{}
}

func watch(t *testing.T, c *coord, keyspaces ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(as(t, viewerToken))
	t.Cleanup(cancel)
	stream, err := c.shards.WatchRoutes(ctx, &drplanev1.WatchRoutesRequest{Keyspaces: keyspaces})
	require.NoError(t, err)
	w := &watcher{seen: make(chan struct{}, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if resp.GetTable().GetKeyspace() != "orders" {
				continue
			}
			w.mu.Lock()
			w.latest = resp.GetTable()
			w.mu.Unlock()
			select {
			case w.seen <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

func (w *watcher) table() *drplanev1.RoutingTable {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

// atRevision reports whether the watcher's orders table is at rev or later.
func (w *watcher) atRevision(rev int64) bool {
	t := w.table()
	return t != nil && t.GetMapRevision() >= rev
}

func TestWatchRoutesSeesChangesAtOnce(t *testing.T) {
	st, cs := startCoords(t, 3)
	_, followers := leaderOf(t, cs)

	// Eight watchers spread over the coordinators, some on every keyspace.
	var ws []*watcher
	for i := range 8 {
		if i%2 == 0 {
			ws = append(ws, watch(t, cs[i%len(cs)], "orders"))
		} else {
			ws = append(ws, watch(t, cs[i%len(cs)]))
		}
	}
	start := loadMap(t, st, "orders").Revision
	for _, w := range ws {
		check.For(t, callTimeout, 2*time.Millisecond, func() error { return check.That(w.atRevision(start), "initial table") })
	}

	// A move through a follower: every watcher sees the new map.
	begin := time.Now()
	resp, err := followers[0].shards.MoveShard(as(t, adminToken), &drplanev1.MoveShardRequest{Force: true,
		Keyspace: "orders", Shard: 27, OwnerDc: "dc-b1", Reason: "test move",
	})
	require.NoError(t, err)
	rev := resp.GetMutation().GetRevision()
	for _, w := range ws {
		check.For(t, callTimeout, time.Millisecond, func() error { return check.That(w.atRevision(rev), "w.atRevision(rev)") })
		s := w.table().GetShards()[27]
		assert.Equal(t, "dc-b1", s.GetOwnerDc())
		assert.Equal(t, "dc-a1", s.GetBackupDc())
		assert.Equal(t, rev, s.GetRevision())
	}
	t.Logf("move seen by %d watchers %s after the call started", len(ws), time.Since(begin))

	// A new master of the owner DC is pushed too (same map revision).
	_, mrev, err := st.Master(t.Context(), "dc-b1", "main")
	require.NoError(t, err)
	_, err = st.PutMaster(t.Context(), state.MasterRecord{DC: "dc-b1", Cluster: "main", Instance: "dc-b1-db2", Addr: "127.0.0.1:3327", Term: 2,
		UpdatedAt: time.Now().UTC(), Reason: "test"}, mrev, nil)
	require.NoError(t, err)
	for _, w := range ws {
		check.For(t, callTimeout, time.Millisecond, func() error {
			for _, m := range w.table().GetMasters() {
				if m.GetDc() == "dc-b1" {
					return check.That(m.GetInstance() == "dc-b1-db2" && m.GetTerm() == 2, "dc-b1 master %s term %d, want dc-b1-db2 term 2", m.GetInstance(), m.GetTerm())
				}
			}
			return check.That(false, "no dc-b1 master in the table")
		})
	}
	// Route answers with the new master everywhere.
	for _, c := range cs {
		r, err := c.shards.Route(as(t, viewerToken), &drplanev1.RouteRequest{Keyspace: "orders", Key: "42"})
		require.NoError(t, err)
		assert.Equal(t, "dc-b1-db2", r.GetRoute().GetMaster().GetInstance(), "coordinator %s", c.id)
	}

	// An unknown keyspace is refused at once.
	stream, err := cs[0].shards.WatchRoutes(as(t, viewerToken), &drplanev1.WatchRoutesRequest{Keyspaces: []string{"orders", "carts"}})
	require.NoError(t, err)
	_, err = stream.Recv()
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "keyspaces[1]")
}

func TestInvalidMoveIsRejectedAndMapKept(t *testing.T) {
	st, cs := startCoords(t, 2)
	before := loadMap(t, st, "orders")
	ctx := as(t, adminToken)
	for _, c := range cs {
		tests := []struct {
			name  string
			req   *drplanev1.MoveShardRequest
			code  drplanev1.ErrorCode
			field string
		}{
			{"unknown owner DC", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 3, OwnerDc: "dc-zz", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "owner_dc"},
			{"backup equals owner", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 3, OwnerDc: "dc-b1", BackupDc: "dc-b1", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "backup_dc"},
			{"unknown backup DC", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 3, OwnerDc: "dc-b1", BackupDc: "dc-q", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "backup_dc"},
			{"no owner", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 3, Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "owner_dc"},
			{"unknown shard", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 64, OwnerDc: "dc-b1", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "shard"},
			{"negative shard", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: -1, OwnerDc: "dc-b1", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "shard"},
			{"unknown keyspace", &drplanev1.MoveShardRequest{Keyspace: "carts", Shard: 1, OwnerDc: "dc-b1", Reason: "x"},
				drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "keyspace"},
			{"no reason", &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 3, OwnerDc: "dc-b1"},
				drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "reason"},
		}
		for _, tt := range tests {
			t.Run(c.id+"/"+tt.name, func(t *testing.T) {
				_, err := c.shards.MoveShard(ctx, tt.req)
				requireCode(t, err, tt.code, tt.field)
			})
		}
	}
	_, err := cs[0].shards.SetShardState(ctx, &drplanev1.SetShardStateRequest{Keyspace: "orders", Shard: 3, Reason: "x"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "state")
	_, err = cs[0].shards.SetDCState(ctx, &drplanev1.SetDCStateRequest{Dc: "dc-zz", State: "DOWN", Reason: "x"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "dc")
	_, err = cs[0].shards.SetDCState(ctx, &drplanev1.SetDCStateRequest{Dc: "dc-a1", State: "ASLEEP", Reason: "x"})
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "state")

	after := loadMap(t, st, "orders")
	assert.Equal(t, before.Revision, after.Revision, "the stored map is unchanged")
	assert.Equal(t, before.Shards, after.Shards)
	moves := events(t, st, ops.ActionShardMove)
	require.Len(t, moves, 16, "every refused move is audited")
	for _, e := range moves {
		assert.Equal(t, audit.OutcomeFailed, e.Outcome)
		assert.Equal(t, "token:ops-admin", e.Actor)
	}

	// The leader applies the same rules to an operation that reached the
	// queue without the API's checks: FAILED, map unchanged.
	q := cs[0].node.Queue
	op, err := q.Submit(t.Context(), ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: 3, Owner: "dc-b1", Backup: "dc-b1"}, "raw")
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "backup_dc")
	assert.Equal(t, ops.Failed, op.State)
	assert.Equal(t, before.Revision, loadMap(t, st, "orders").Revision)
}

func TestMutationOnFollowerIsAppliedByLeader(t *testing.T) {
	st, cs := startCoords(t, 3)
	lead, followers := leaderOf(t, cs)

	for _, f := range followers {
		resp, err := f.shards.SetShardState(as(t, adminToken), &drplanev1.SetShardStateRequest{
			Keyspace: "orders", Shard: 5, State: drplanev1.ShardState_SHARD_STATE_FROZEN, Reason: "freeze for test",
		})
		require.NoError(t, err)
		mu := resp.GetMutation()
		assert.Equal(t, lead.id, mu.GetLeader(), "sent to %s", f.id)
		assert.NotEmpty(t, mu.GetOperationId())
		op, err := lead.node.Queue.Get(t.Context(), mu.GetOperationId())
		require.NoError(t, err)
		assert.Equal(t, ops.Done, op.State)
		assert.Equal(t, "ops-admin", op.RequestedBy)
	}
	s, _ := loadMap(t, st, "orders").Shard(5)
	assert.Equal(t, shardmap.Frozen, s.State)

	// Every coordinator answers with the frozen state once its cache caught up.
	for _, c := range cs {
		check.For(t, callTimeout, 2*time.Millisecond, func() error {
			r, err := c.shards.GetShard(as(t, viewerToken), &drplanev1.GetShardRequest{Keyspace: "orders", Shard: 5})
			if err != nil {
				return err
			}
			return check.That(r.GetShard().GetState() == drplanev1.ShardState_SHARD_STATE_FROZEN, "r.GetShard().GetState() = %v, want drplanev1.ShardState_SHARD_STATE_FROZEN", r.GetShard().GetState())
		})
	}

	// A DC state change goes through the same queue.
	resp, err := followers[1].shards.SetDCState(as(t, adminToken), &drplanev1.SetDCStateRequest{Dc: "dc-a2", State: "draining", Reason: "maintenance"})
	require.NoError(t, err)
	assert.Equal(t, lead.id, resp.GetMutation().GetLeader())
	topo, rev, err := st.Topology(t.Context())
	require.NoError(t, err)
	assert.Equal(t, resp.GetMutation().GetRevision(), rev)
	dc, _ := topo.DC("dc-a2")
	assert.Equal(t, topology.DCDraining, dc.StateOf())
	ev := events(t, st, ops.ActionDCSetState)
	require.Len(t, ev, 1)
	assert.Equal(t, audit.OutcomeOK, ev[0].Outcome)
	assert.Equal(t, "maintenance", ev[0].Params["reason"])
}

// TestLeaderLossMidMutation queues operations while no coordinator runs,
// then sends more through the API of two coordinators while the leader's
// etcd session is revoked between queueing and applying. Each operation is
// applied exactly once and the map stays whole.
func TestLeaderLossMidMutation(t *testing.T) {
	st, cs := startCoords(t, 1)
	lone := cs[0]
	// Queue through the API with a wait that ends at once, then stop the
	// only coordinator: the operation may be applied or still queued.
	first, err := lone.shards.SetShardState(as(t, adminToken), &drplanev1.SetShardStateRequest{
		Keyspace: "orders", Shard: 0, State: drplanev1.ShardState_SHARD_STATE_MOVING, Reason: "before the outage",
	})
	require.NoError(t, err)
	lone.stop()

	// No coordinator runs: operations only queue.
	idle := ops.New(ops.Options{Store: st, Leader: lone.node.Leader})
	var queued []ops.Op
	dcs := []string{"dc-a1", "dc-a2", "dc-b1"}
	for i := range 6 {
		op, err := idle.Enqueue(t.Context(), ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: i,
			Owner: dcs[(i+1)%3], Backup: dcs[(i+2)%3], Reason: "queued in the outage"}, "ops-admin")
		require.NoError(t, err)
		queued = append(queued, op)
	}

	// Two coordinators come up; while they apply, the leader's session is
	// revoked, and more mutations arrive through both APIs.
	a, b := startCoord(t, st, "coord-a"), startCoord(t, st, "coord-b")
	revoke := func() {
		for _, c := range []*coord{a, b} {
			if term, ok := c.node.Leader.Current(); ok {
				resp, err := st.Client().Get(t.Context(), term.Fence.Key)
				if err == nil && len(resp.Kvs) == 1 {
					_, _ = st.Client().Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
				}
			}
		}
	}
	leaderOf(t, []*coord{a, b})
	revoke()
	var wg sync.WaitGroup
	for i, c := range []*coord{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shard := int32(10 + i)
			_, err := c.shards.MoveShard(as(t, adminToken), &drplanev1.MoveShardRequest{Force: true,
				Keyspace: "orders", Shard: shard, OwnerDc: dcs[i%3], BackupDc: dcs[(i+1)%3], Reason: fmt.Sprintf("during handover %d", i),
			})
			// Applied, or still queued when the handover outlasted the wait.
			if err != nil {
				assert.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE), "%v", err)
			}
			if i == 1 {
				revoke()
			}
		}()
	}
	wg.Wait()

	var all []ops.Op
	check.For(t, callTimeout, 10*time.Millisecond, func() error {
		all, _, err = a.node.Queue.List(t.Context())
		if err != nil {
			return err
		}
		for _, o := range all {
			if !o.Finished() {
				return fmt.Errorf("operation %s not finished", o.ID)
			}
		}
		return check.That(len(all) == 1+len(queued)+4, "%d operations, want %d", len(all), 1+len(queued)+4)
	})

	perOp := map[string]int{}
	all2, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	for _, e := range all2 {
		if id := e.Params[ops.MetaOperationID]; id != "" {
			perOp[id]++
		}
	}
	for _, o := range all {
		assert.Equal(t, ops.Done, o.State, "%s %s: %s", o.ID, o.Code, o.Error)
		assert.Equal(t, 1, perOp[o.ID], "operation %s applied %d times", o.ID, perOp[o.ID])
	}
	assert.Equal(t, first.GetMutation().GetOperationId(), all[0].ID)

	m := loadMap(t, st, "orders")
	topo, _, err := st.Topology(t.Context())
	require.NoError(t, err)
	require.NoError(t, m.Validate(topo), "the map is whole")
	for i, op := range queued {
		s, _ := m.Shard(i)
		assert.Equal(t, op.Params.Owner, s.Owner, "shard %d", i)
	}
	s0, _ := m.Shard(0)
	assert.Equal(t, shardmap.Moving, s0.State)
}

func TestViewerCannotMutate(t *testing.T) {
	st, cs := startCoords(t, 1)
	c := cs[0]
	before := loadMap(t, st, "orders")

	_, err := c.shards.MoveShard(as(t, viewerToken), &drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 1, OwnerDc: "dc-b1", Reason: "x"})
	e := requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
	assert.Contains(t, e.Message, "needs role admin")
	code, body := c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/1:setState", viewerToken, `{"state": "SHARD_STATE_FROZEN", "reason": "x"}`)
	assert.Equal(t, http.StatusForbidden, code, "body: %s", body)
	assert.Contains(t, string(body), `"reason":"PERMISSION_DENIED"`)
	code, _ = c.rest(t, http.MethodPost, "/v1/dcs/dc-a1:setState", "", `{"state": "DOWN", "reason": "x"}`)
	assert.Equal(t, http.StatusUnauthorized, code)

	assert.Equal(t, before.Revision, loadMap(t, st, "orders").Revision)
	moves := events(t, st, ops.ActionShardMove)
	require.Len(t, moves, 1)
	assert.Equal(t, audit.OutcomeDenied, moves[0].Outcome)
	assert.Equal(t, "token:dashboard", moves[0].Actor)
	assert.Equal(t, "orders/1", moves[0].Target)
	states := events(t, st, ops.ActionShardSetState)
	require.Len(t, states, 1)
	assert.Equal(t, audit.OutcomeDenied, states[0].Outcome)
	assert.Empty(t, events(t, st, ops.ActionDCSetState), "calls without a valid token are not audited")
}

func TestShardREST(t *testing.T) {
	st, cs := startCoords(t, 1)
	c := cs[0]

	code, body := c.rest(t, http.MethodGet, "/v1/keyspaces/orders/route/42", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	var route struct {
		Route struct {
			Keyspace string `json:"keyspace"`
			Shard    int    `json:"shard"`
			OwnerDC  string `json:"owner_dc"`
			State    string `json:"state"`
			Master   struct {
				Instance string `json:"instance"`
				Addr     string `json:"addr"`
			} `json:"master"`
			MapRevision string `json:"map_revision"`
		} `json:"route"`
	}
	require.NoError(t, json.Unmarshal(body, &route), "body: %s", body)
	assert.Equal(t, 27, route.Route.Shard)
	assert.Equal(t, "dc-a1", route.Route.OwnerDC)
	assert.Equal(t, "SHARD_STATE_ACTIVE", route.Route.State)
	assert.Equal(t, "dc-a1-db1", route.Route.Master.Instance)
	assert.NotEmpty(t, route.Route.MapRevision)

	code, body = c.rest(t, http.MethodPost, "/v1/keyspaces/orders:batchRoute", viewerToken, `{"keys": ["42", "7"]}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"shard":27`)

	code, body = c.rest(t, http.MethodGet, "/v1/keyspaces/orders/shards", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"function":"HASH"`)
	code, body = c.rest(t, http.MethodGet, "/v1/keyspaces/orders/shards/99", viewerToken, "")
	assert.Equal(t, http.StatusNotFound, code, "body: %s", body)
	assert.Contains(t, string(body), `"field":"shard"`)

	code, body = c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/27:move", adminToken, `{"owner_dc": "dc-a2", "reason": "rest move", "force": true}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"leader":"coord-1"`)
	s, _ := loadMap(t, st, "orders").Shard(27)
	assert.Equal(t, "dc-a2", s.Owner)
	assert.Equal(t, "dc-b1", s.Backup, "the backup stays when it is not the new owner")
	// Read your writes: the coordinator that answered routes by the new map.
	code, body = c.rest(t, http.MethodGet, "/v1/keyspaces/orders/route/42", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"owner_dc":"dc-a2"`)

	code, body = c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/27:move", adminToken, `{"owner_dc": "dc-a2", "backup_dc": "dc-a2", "reason": "x"}`)
	assert.Equal(t, http.StatusBadRequest, code, "body: %s", body)
	assert.Contains(t, string(body), `"field":"backup_dc"`)
	code, body = c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/27:move", adminToken, `{"owner_dc": 7}`)
	assert.Equal(t, http.StatusBadRequest, code, "malformed JSON: %s", body)
	assert.Contains(t, string(body), `"reason":"INVALID_ARGUMENT"`)

	code, body = c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/27:setState", adminToken, `{"state": "SHARD_STATE_FROZEN", "reason": "rest"}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	code, body = c.rest(t, http.MethodPost, "/v1/dcs/dc-b1:setState", adminToken, `{"state": "DRAINING", "reason": "rest"}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)

	code, body = c.rest(t, http.MethodPost, "/v1/dcs/dc-b1:evacuate", adminToken, `{"dry_run": true}`)
	assert.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"dry_run":true`)
	code, body = c.rest(t, http.MethodPost, "/v1/dcs/dc-b1:evacuate", adminToken, `{"to": "dc-b1"}`)
	assert.Equal(t, http.StatusBadRequest, code, "body: %s", body)
	assert.Contains(t, string(body), `"field":"to"`)

	// The watch over REST: newline-delimited results, the first one the
	// table the coordinator's cache holds, then each change (the cache may
	// be a moment behind the setState just applied).
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/routes:watch?keyspaces=orders", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Result struct {
				Table struct {
					Keyspace string `json:"keyspace"`
					Shards   []struct {
						State string `json:"state"`
					} `json:"shards"`
				} `json:"table"`
			} `json:"result"`
		}
		require.NoError(t, dec.Decode(&msg))
		assert.Equal(t, "orders", msg.Result.Table.Keyspace)
		require.Len(t, msg.Result.Table.Shards, 64)
		if msg.Result.Table.Shards[27].State == "SHARD_STATE_FROZEN" {
			break
		}
	}

	code, body = c.rest(t, http.MethodGet, "/openapi.json", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), "/v1/keyspaces/{keyspace}/route/{key}")
}
