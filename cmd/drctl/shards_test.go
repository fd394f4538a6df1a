package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fakeShards stands in for the coordinator's ShardService: a fixed routing
// table of keyspace orders (4 shards), recording the mutations it gets.
type fakeShards struct {
	drplanev1.UnimplementedShardServiceServer

	mu        sync.Mutex
	calls     []proto.Message
	deadlines []time.Duration
}

func (f *fakeShards) record(ctx context.Context, m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
	if dl, ok := ctx.Deadline(); ok {
		f.deadlines = append(f.deadlines, time.Until(dl))
	}
}

func (f *fakeShards) last() (proto.Message, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1], f.deadlines[len(f.deadlines)-1]
}

func fixtureTable() *drplanev1.RoutingTable {
	t := &drplanev1.RoutingTable{Keyspace: "orders", Function: "HASH", Cluster: "main", MapRevision: 12, Masters: []*drplanev1.MasterEndpoint{
		{Dc: "dc-a1", Cluster: "main", Instance: "dc-a1-db1", Addr: "127.0.0.1:3306", Term: 1},
		{Dc: "dc-b1", Cluster: "main", Instance: "dc-b1-db2", Addr: "127.0.0.1:3326", Term: 3},
	}}
	bounds := []string{"0", "4611686018427387904", "9223372036854775808", "13835058055282163712", "0"}
	owners := []string{"dc-a1", "dc-b1", "dc-a2", "dc-a1"}
	for i := range 4 {
		t.Shards = append(t.Shards, &drplanev1.Shard{Id: int32(i), Lo: bounds[i], Hi: bounds[i+1], OwnerDc: owners[i], BackupDc: "dc-b1",
			State: drplanev1.ShardState_SHARD_STATE_ACTIVE, Revision: 12})
	}
	t.Shards[1].BackupDc = "dc-a1"
	t.Shards[2].State = drplanev1.ShardState_SHARD_STATE_FROZEN
	return t
}

func (f *fakeShards) Route(ctx context.Context, req *drplanev1.RouteRequest) (*drplanev1.RouteResponse, error) {
	f.record(ctx, req)
	if req.GetKeyspace() != "orders" {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `keyspace "` + req.GetKeyspace() + `" not found`, Field: "keyspace"}
	}
	t := fixtureTable()
	return &drplanev1.RouteResponse{Route: &drplanev1.Route{
		Keyspace: "orders", Shard: 1, OwnerDc: "dc-b1", BackupDc: "dc-a1", State: drplanev1.ShardState_SHARD_STATE_ACTIVE,
		Master: t.GetMasters()[1], ShardRevision: 10, MapRevision: 12,
	}}, nil
}

func (f *fakeShards) ListShards(ctx context.Context, req *drplanev1.ListShardsRequest) (*drplanev1.ListShardsResponse, error) {
	f.record(ctx, req)
	return &drplanev1.ListShardsResponse{Table: fixtureTable()}, nil
}

func (f *fakeShards) GetShard(ctx context.Context, req *drplanev1.GetShardRequest) (*drplanev1.GetShardResponse, error) {
	f.record(ctx, req)
	t := fixtureTable()
	if int(req.GetShard()) >= len(t.GetShards()) {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: "shard 9 not found in keyspace orders (it has 4 shards)", Field: "shard"}
	}
	s := t.GetShards()[req.GetShard()]
	return &drplanev1.GetShardResponse{Shard: s, Route: &drplanev1.Route{Keyspace: "orders", Shard: s.GetId(), OwnerDc: s.GetOwnerDc(),
		BackupDc: s.GetBackupDc(), State: s.GetState(), Master: t.GetMasters()[0], ShardRevision: 12, MapRevision: 12}}, nil
}

func mutation() *drplanev1.Mutation {
	return &drplanev1.Mutation{OperationId: "op-1", Revision: 40, Leader: "coord-2"}
}

func (f *fakeShards) MoveShard(ctx context.Context, req *drplanev1.MoveShardRequest) (*drplanev1.MoveShardResponse, error) {
	f.record(ctx, req)
	if req.GetOwnerDc() == req.GetBackupDc() {
		return nil, apierr.InvalidArgument("backup_dc", `backup_dc "`+req.GetBackupDc()+`" must differ from owner_dc`)
	}
	return &drplanev1.MoveShardResponse{Mutation: mutation()}, nil
}

func (f *fakeShards) SetShardState(ctx context.Context, req *drplanev1.SetShardStateRequest) (*drplanev1.SetShardStateResponse, error) {
	f.record(ctx, req)
	return &drplanev1.SetShardStateResponse{Mutation: mutation()}, nil
}

func (f *fakeShards) SetDCState(ctx context.Context, req *drplanev1.SetDCStateRequest) (*drplanev1.SetDCStateResponse, error) {
	f.record(ctx, req)
	return &drplanev1.SetDCStateResponse{Mutation: mutation()}, nil
}

// startShardAPI serves the fake ShardService with the token checks of
// drctl_test.go on a free loopback port.
func startShardAPI(t *testing.T) (string, *fakeShards) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	f := &fakeShards{}
	drplanev1.RegisterShardServiceServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), f
}

func TestRouteCommand(t *testing.T) {
	addr, _ := startShardAPI(t)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"route", "orders", "42"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `orders key 42 → shard 1 (ACTIVE)
  owner dc-b1, backup dc-a1
  master dc-b1-db2 at 127.0.0.1:3326 (term 3)
  map revision 12, shard revision 10
`, r.stdout)

	r = drctl(t, nil, append([]string{"route", "orders", "42", "-o", "json"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	var out struct {
		Route struct {
			Keyspace      string `json:"keyspace"`
			Shard         int    `json:"shard"`
			OwnerDC       string `json:"owner_dc"`
			BackupDC      string `json:"backup_dc"`
			State         string `json:"state"`
			ShardRevision string `json:"shard_revision"`
			MapRevision   string `json:"map_revision"`
			Master        struct {
				DC       string `json:"dc"`
				Instance string `json:"instance"`
				Addr     string `json:"addr"`
			} `json:"master"`
		} `json:"route"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	assert.Equal(t, "orders", out.Route.Keyspace)
	assert.Equal(t, 1, out.Route.Shard)
	assert.Equal(t, "dc-b1", out.Route.OwnerDC)
	assert.Equal(t, "dc-a1", out.Route.BackupDC)
	assert.Equal(t, "SHARD_STATE_ACTIVE", out.Route.State)
	assert.Equal(t, "dc-b1-db2", out.Route.Master.Instance)
	assert.Equal(t, "127.0.0.1:3326", out.Route.Master.Addr)
	assert.Equal(t, "12", out.Route.MapRevision)
	assert.Equal(t, "10", out.Route.ShardRevision)

	r = drctl(t, nil, append([]string{"route", "carts", "1"}, api...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "drctl: keyspace \"carts\" not found (field keyspace) (code NOT_FOUND)\n", r.stderr)
	r = drctl(t, nil, append([]string{"route", "orders"}, api...)...)
	assert.Equal(t, exitUsage, r.code)
}

func TestShardsListAndShow(t *testing.T) {
	addr, _ := startShardAPI(t)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"shards", "list", "orders"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `keyspace orders: 4 shards, HASH, cluster main, map revision 12
SHARD  RANGE                                        OWNER  BACKUP  STATE   OWNER MASTER  REVISION
0      [0, 4611686018427387904)                     dc-a1  dc-b1   ACTIVE  dc-a1-db1     12
1      [4611686018427387904, 9223372036854775808)   dc-b1  dc-a1   ACTIVE  dc-b1-db2     12
2      [9223372036854775808, 13835058055282163712)  dc-a2  dc-b1   FROZEN  -             12
3      [13835058055282163712, 2^64)                 dc-a1  dc-b1   ACTIVE  dc-a1-db1     12
masters:
  dc-a1  dc-a1-db1 at 127.0.0.1:3306 (term 1)
  dc-b1  dc-b1-db2 at 127.0.0.1:3326 (term 3)
`, r.stdout)

	r = drctl(t, nil, append([]string{"shards", "show", "orders", "2"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `shard orders/2 (FROZEN)
  range [9223372036854775808, 13835058055282163712)
  owner dc-a2, backup dc-b1
  master dc-a1-db1 at 127.0.0.1:3306 (term 1)
  map revision 12, shard revision 12
`, r.stdout)

	r = drctl(t, nil, append([]string{"shards", "show", "orders", "9"}, api...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "(field shard) (code NOT_FOUND)")
	r = drctl(t, nil, append([]string{"shards", "show", "orders", "x"}, api...)...)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `invalid shard "x"`)
}

func TestShardMutations(t *testing.T) {
	addr, f := startShardAPI(t)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"shards", "move", "orders", "27", "--to", "dc-b1", "--reason", "rebalance"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "shard orders/27: owner dc-b1 — applied at revision 40 by leader coord-2\n  operation op-1\n", r.stdout)
	req, left := f.last()
	assert.True(t, proto.Equal(&drplanev1.MoveShardRequest{Keyspace: "orders", Shard: 27, OwnerDc: "dc-b1", Reason: "rebalance"}, req), "%v", req)
	assert.Greater(t, left, 14*time.Second, "a mutation waits longer than the default call deadline")

	r = drctl(t, nil, append([]string{"shards", "move", "orders", "27", "--to", "dc-b1", "--backup", "dc-b1", "--reason", "x", "-o", "json"}, api...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "(field backup_dc) (code INVALID_ARGUMENT)")
	assert.Empty(t, r.stdout)

	r = drctl(t, nil, append([]string{"shards", "move", "orders", "27", "--to", "dc-b1"}, api...)...)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `required flag(s) "reason" not set`)

	r = drctl(t, nil, append([]string{"shards", "set-state", "orders", "3", "frozen", "--reason", "check", "--timeout", "3s", "-o", "json"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"operation_id": "op-1"`)
	req, left = f.last()
	assert.True(t, proto.Equal(&drplanev1.SetShardStateRequest{Keyspace: "orders", Shard: 3, State: drplanev1.ShardState_SHARD_STATE_FROZEN, Reason: "check"}, req), "%v", req)
	assert.LessOrEqual(t, left, 3*time.Second, "an explicit --timeout is kept")

	r = drctl(t, nil, append([]string{"shards", "set-state", "orders", "3", "MELTED", "--reason", "x"}, api...)...)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "want ACTIVE, FROZEN, MOVING")

	r = drctl(t, nil, append([]string{"dc", "set-state", "dc-a2", "draining", "--reason", "power work"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "DC dc-a2: state DRAINING — applied"), r.stdout)
	req, _ = f.last()
	assert.True(t, proto.Equal(&drplanev1.SetDCStateRequest{Dc: "dc-a2", State: "DRAINING", Reason: "power work"}, req), "%v", req)
	r = drctl(t, nil, append([]string{"dc", "set-state", "dc-a2", "asleep", "--reason", "x"}, api...)...)
	assert.Equal(t, exitUsage, r.code)

	// A viewer-level token the fake refuses.
	r = drctl(t, nil, "dc", "set-state", "dc-a2", "DOWN", "--reason", "x", "--api", addr, "--token", nobodyToken)
	assert.Equal(t, exitAuth, r.code)
}
