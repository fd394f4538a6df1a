package main

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fakeCity stands in for the coordinator's CityFailoverService (the
// service itself is tested against a real coordinator in
// services/coordinator/internal/coordinator).
type fakeCity struct {
	drplanev1.UnimplementedCityFailoverServiceServer
	mu   sync.Mutex
	reqs []proto.Message
}

func (f *fakeCity) record(m proto.Message) {
	f.mu.Lock()
	f.reqs = append(f.reqs, m)
	f.mu.Unlock()
}

func (f *fakeCity) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func fixtureCityFailover() *drplanev1.CityFailover {
	return &drplanev1.CityFailover{
		Id: "city_failover-1", Dc: "dc-a1", Trigger: "automatic", State: drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE,
		Verdict: "DCLost", Reason: "lease gone for 1.2s", Witnesses: []string{"dc-a2", "dc-b1"}, FlipMs: 260,
		ShardsTotal: 2, ShardsFlipped: 2,
		Estimate: &drplanev1.RPOEstimate{RequestIds: []string{"1-1-7/3", "1-1-8/3"}, RequestsTotal: 2, MaxLagBoundMs: 1500},
		Exact:    &drplanev1.RPOExact{RequestsTotal: 1, Requests: []*drplanev1.LostRequest{{RequestId: "1-1-8/3", Gtid: "1-1-8"}}},
		Shards: []*drplanev1.CityFailoverShard{
			{Keyspace: "orders", Shard: 3, FromDc: "dc-a1", ToDc: "dc-b1", Fence: "1-1-6", LagBoundMs: 1500, LedgerMissing: 2, Flipped: true},
			{Keyspace: "orders", Shard: 9, FromDc: "dc-a1", ToDc: "dc-a2", LagBoundMs: -1, Flipped: true},
		},
	}
}

func (f *fakeCity) FailOverDC(_ context.Context, req *drplanev1.FailOverDCRequest) (*drplanev1.FailOverDCResponse, error) {
	f.record(req)
	if req.GetDc() == "dc-b1" {
		e := apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "DC dc-b1 is not lost: its HA agent a holds its lease")
		e.Field = "dc"
		return nil, e
	}
	return &drplanev1.FailOverDCResponse{Failover: fixtureCityFailover()}, nil
}

func (f *fakeCity) ListCityFailovers(_ context.Context, req *drplanev1.ListCityFailoversRequest) (*drplanev1.ListCityFailoversResponse, error) {
	f.record(req)
	fo := fixtureCityFailover()
	fo.Shards = nil
	return &drplanev1.ListCityFailoversResponse{Failovers: []*drplanev1.CityFailover{fo}}, nil
}

func (f *fakeCity) GetCityFailover(_ context.Context, req *drplanev1.GetCityFailoverRequest) (*drplanev1.GetCityFailoverResponse, error) {
	f.record(req)
	if req.GetId() != "city_failover-1" {
		return nil, apierr.NotFound("city failover", req.GetId())
	}
	return &drplanev1.GetCityFailoverResponse{Failover: fixtureCityFailover()}, nil
}

func startCityAPI(t *testing.T) (string, *fakeCity) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	fc := &fakeCity{}
	drplanev1.RegisterTopologyServiceServer(gs, &fakeAPI{status: fixtureStatus()})
	drplanev1.RegisterCityFailoverServiceServer(gs, fc)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), fc
}

func TestFailoverDCCommand(t *testing.T) {
	addr, fc := startCityAPI(t)
	r := drctl(t, nil, "failover", "dc", "dc-a1", "--accept-loss", "--reason", "flooded", "--timeout", "45s", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.FailOverDCRequest{Dc: "dc-a1", AcceptLoss: true, Reason: "flooded", TimeoutSeconds: 45}, fc.last()))
	assert.Contains(t, r.stdout, "city failover city_failover-1 of dc-a1: DONE\n")
	assert.Contains(t, r.stdout, "trigger: automatic (DCLost: lease gone for 1.2s; witnesses dc-a2, dc-b1)\n")
	assert.Contains(t, r.stdout, "shards flipped: 2 of 2 in 260ms\n")
	assert.Contains(t, r.stdout, "estimated loss: 2 requests (loss window 1.5s): 1-1-7/3, 1-1-8/3\n")
	assert.Contains(t, r.stdout, "exact loss: 1 requests: 1-1-8/3 (1-1-8)\n")
	rows := readTable(t, r.stdout, "KEYSPACE")
	require.Len(t, rows, 2)
	assert.Equal(t, map[string]string{"KEYSPACE": "orders", "SHARD": "9", "FROM": "dc-a1", "TO": "dc-a2", "FLIPPED": "yes",
		"FENCE": "-", "LOSS WINDOW": "unknown", "LEDGER MISSING": "0", "HELD": "-"}, rows[1])

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no reason", []string{"failover", "dc", "dc-a1"}, exitUsage, `required flag(s) "reason" not set`},
		{"blank reason", []string{"failover", "dc", "dc-a1", "--reason", " "}, exitUsage, "--reason must not be empty"},
		{"no dc", []string{"failover", "dc", "--reason", "x"}, exitUsage, "accepts 1 arg(s), received 0"},
		{"timeout", []string{"failover", "dc", "dc-a1", "--reason", "x", "--timeout", "10m"}, exitUsage, "invalid --timeout 10m0s"},
		{"alive", []string{"failover", "dc", "dc-b1", "--reason", "x"}, exitFailure, "is not lost: its HA agent a holds its lease (field dc) (code FAILED_PRECONDITION)"},
		{"role", []string{"failover", "dc", "dc-a1", "--reason", "x", "--token", nobodyToken}, exitAuth, "(code PERMISSION_DENIED)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := drctl(t, nil, append([]string{"--api", addr, "--token", adminToken}, tc.args...)...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.stderr)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestFailoversListShow(t *testing.T) {
	addr, fc := startCityAPI(t)
	r := drctl(t, nil, "failovers", "list", "--dc", "dc-a1", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListCityFailoversRequest{Dc: "dc-a1"}, fc.last()))
	rows := readTable(t, r.stdout, "ID")
	require.Len(t, rows, 1)
	assert.Equal(t, map[string]string{"ID": "city_failover-1", "DC": "dc-a1", "STATE": "DONE", "FLIPPED": "2/2", "FLIP": "260ms",
		"ESTIMATE": "2", "LOSS WINDOW": "1.5s", "EXACT": "1", "TRIGGER": "automatic", "HELD": "-"}, rows[0])

	r = drctl(t, nil, "failovers", "show", "city_failover-1", "--api", addr, "--token", adminToken, "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	got := &drplanev1.GetCityFailoverResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.True(t, proto.Equal(fixtureCityFailover(), got.GetFailover()))

	r = drctl(t, nil, "failovers", "show", "nope", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "(code NOT_FOUND)")
}
