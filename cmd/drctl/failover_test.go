package main

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fakeFailover stands in for the coordinator's FailoverService: canned
// switchover answers by cluster name, fixed records, kill switches in memory.
type fakeFailover struct {
	drplanev1.UnimplementedFailoverServiceServer

	mu        sync.Mutex
	calls     []proto.Message // requests received, in order
	deadlines []time.Duration // time left on each Switchover call
	switches  map[string]*drplanev1.KillSwitch
}

func (f *fakeFailover) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
}

// last returns the last request received.
func (f *fakeFailover) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

func fixtureSwitchover(dc, cluster, to string) *drplanev1.SwitchoverResponse {
	at := timestamppb.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	if to == "" {
		to = "dc-a1-db2"
	}
	return &drplanev1.SwitchoverResponse{
		Intent: &drplanev1.SwitchoverIntent{
			Id: "so-1", Dc: dc, Cluster: cluster, To: to, RequestedBy: "ops", RequestedAt: at,
			State: drplanev1.SwitchoverState_SWITCHOVER_STATE_DONE, RecordId: "rec-1",
		},
		Record: &drplanev1.FailoverRecord{
			Id: "rec-1", Dc: dc, Cluster: cluster, Kind: drplanev1.FailoverKind_FAILOVER_KIND_SWITCHOVER, Trigger: "operator:ops",
			OldMaster: "dc-a1-db1", NewMaster: to, Outcome: drplanev1.FailoverOutcome_FAILOVER_OUTCOME_SUCCEEDED,
			DetectedAt: at, StartedAt: at, WritableAt: at, FinishedAt: at,
			Rto: durationpb.New(1500 * time.Millisecond), BlockWindow: durationpb.New(35 * time.Millisecond),
		},
	}
}

func (f *fakeFailover) Switchover(ctx context.Context, req *drplanev1.SwitchoverRequest) (*drplanev1.SwitchoverResponse, error) {
	f.record(req)
	if dl, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.deadlines = append(f.deadlines, time.Until(dl))
		f.mu.Unlock()
	}
	switch {
	case req.GetDc() != "dc-a1":
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `dc "` + req.GetDc() + `" not found`, Field: "dc"}
	case req.GetCluster() == "busy":
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "switchover so-0 of dc-a1/busy is already RUNNING").WithMetadata("intent_id", "so-0")
	case req.GetCluster() == "broken":
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "switchover so-2 of dc-a1/broken failed: replica dc-a1-db2 is 12 transactions behind")
	case req.GetCluster() == "slow":
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "switchover so-3 of dc-a1/slow is still PENDING after 1s; no HA agent took it up")
	}
	return fixtureSwitchover(req.GetDc(), req.GetCluster(), req.GetTo()), nil
}

func fixtureFailovers() []*drplanev1.FailoverRecord {
	at := func(m int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2025, 3, 1, 12, m, 0, 0, time.UTC))
	}
	return []*drplanev1.FailoverRecord{
		{Id: "r3", Dc: "dc-a1", Cluster: "db", Kind: drplanev1.FailoverKind_FAILOVER_KIND_SWITCHOVER, Trigger: "operator:ops",
			OldMaster: "dc-a1-db1", NewMaster: "dc-a1-db2", Outcome: drplanev1.FailoverOutcome_FAILOVER_OUTCOME_SUCCEEDED,
			StartedAt: at(3), Rto: durationpb.New(1500 * time.Millisecond), BlockWindow: durationpb.New(35 * time.Millisecond)},
		{Id: "r2", Dc: "dc-b1", Cluster: "db", Kind: drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER, Trigger: "analysis", Analysis: "DeadMaster",
			OldMaster: "dc-b1-db1", NewMaster: "dc-b1-db3", Outcome: drplanev1.FailoverOutcome_FAILOVER_OUTCOME_SUCCEEDED,
			StartedAt: at(2), Rto: durationpb.New(4200 * time.Millisecond), RpoTransactions: -1,
			Rewind: &drplanev1.FailoverRewind{Transactions: 3, LostRequestsTotal: 4, Complete: true, LostRequests: []string{"0-1-5/1", "0-1-6/1", "0-1-6/2", "0-1-7/3"}}},
		{Id: "r1", Dc: "dc-a1", Cluster: "db", Kind: drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER, Trigger: "analysis", Analysis: "DeadMasterAndSomeReplicas",
			OldMaster: "dc-a1-db1", Outcome: drplanev1.FailoverOutcome_FAILOVER_OUTCOME_FAILED, StartedAt: at(1),
			Error: "no replica\tis eligible", RpoTransactions: 2},
	}
}

func (f *fakeFailover) ListFailovers(_ context.Context, req *drplanev1.ListFailoversRequest) (*drplanev1.ListFailoversResponse, error) {
	f.record(req)
	resp := &drplanev1.ListFailoversResponse{}
	for _, r := range fixtureFailovers() {
		if (req.GetDc() == "" || r.GetDc() == req.GetDc()) && (req.GetCluster() == "" || r.GetCluster() == req.GetCluster()) {
			resp.Records = append(resp.Records, r)
		}
	}
	resp.Records = resp.Records[:min(len(resp.Records), int(req.GetLimit()))]
	return resp, nil
}

func (f *fakeFailover) ListKillSwitches(_ context.Context, req *drplanev1.ListKillSwitchesRequest) (*drplanev1.ListKillSwitchesResponse, error) {
	f.record(req)
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &drplanev1.ListKillSwitchesResponse{}
	for _, ks := range f.switches {
		resp.KillSwitches = append(resp.KillSwitches, ks)
	}
	sort.Slice(resp.KillSwitches, func(i, j int) bool { return resp.KillSwitches[i].GetScope() < resp.KillSwitches[j].GetScope() })
	return resp, nil
}

func (f *fakeFailover) SetKillSwitch(_ context.Context, req *drplanev1.SetKillSwitchRequest) (*drplanev1.SetKillSwitchResponse, error) {
	f.record(req)
	if req.GetDc() == "dc-zz" {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `dc "dc-zz" not found`, Field: "dc"}
	}
	ks := &drplanev1.KillSwitch{
		Scope: scopeOf(req.GetDc(), req.GetCluster()), Dc: req.GetDc(), Cluster: req.GetCluster(), Reason: req.GetReason(),
		SetBy: "ops-admin", SetAt: timestamppb.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.switches[ks.GetScope()] = ks
	return &drplanev1.SetKillSwitchResponse{KillSwitch: ks}, nil
}

func (f *fakeFailover) ClearKillSwitch(_ context.Context, req *drplanev1.ClearKillSwitchRequest) (*drplanev1.ClearKillSwitchResponse, error) {
	f.record(req)
	f.mu.Lock()
	defer f.mu.Unlock()
	scope := scopeOf(req.GetDc(), req.GetCluster())
	ks, ok := f.switches[scope]
	if !ok {
		return &drplanev1.ClearKillSwitchResponse{}, nil
	}
	delete(f.switches, scope)
	return &drplanev1.ClearKillSwitchResponse{Cleared: true, KillSwitch: ks}, nil
}

// fakeTopology adds GetTopology to fakeAPI, for completion.
type fakeTopology struct{ *fakeAPI }

func (fakeTopology) GetTopology(context.Context, *drplanev1.GetTopologyRequest) (*drplanev1.GetTopologyResponse, error) {
	return &drplanev1.GetTopologyResponse{Topology: &drplanev1.Topology{Clusters: []*drplanev1.Cluster{
		{Name: "db", Dc: "dc-a1"}, {Name: "db", Dc: "dc-b1"},
	}}}, nil
}

// startFailoverAPI serves the fake topology and failover services with the
// token checks of drctl_test.go on a free loopback port.
func startFailoverAPI(t *testing.T) (string, *fakeFailover) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	fo := &fakeFailover{switches: map[string]*drplanev1.KillSwitch{}}
	drplanev1.RegisterTopologyServiceServer(gs, fakeTopology{&fakeAPI{status: fixtureStatus()}})
	drplanev1.RegisterFailoverServiceServer(gs, fo)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), fo
}

func TestSwitchoverCommand(t *testing.T) {
	addr, fo := startFailoverAPI(t)
	r := drctl(t, nil, "switchover", "dc-a1/db", "--to", "dc-a1-db3", "--timeout", "90s", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	assert.Equal(t, "switchover of dc-a1/db done: dc-a1-db1 → dc-a1-db3\n"+
		"  RTO 1.5s, block window 35ms, RPO 0 transactions\n"+
		"  intent so-1, record rec-1\n", r.stdout)
	assert.True(t, proto.Equal(&drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "db", To: "dc-a1-db3", TimeoutSeconds: 90}, fo.last()))
	fo.mu.Lock()
	left := fo.deadlines[len(fo.deadlines)-1]
	fo.mu.Unlock()
	assert.Greater(t, left, 90*time.Second, "the call outlives the server's wait, not the global 10s deadline")

	// Defaults: the agent picks, 30 s; sub-second waits round up; JSON.
	r = drctl(t, nil, "switchover", "dc-a1/db", "--api", addr, "--token", adminToken, "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, int32(30), fo.last().(*drplanev1.SwitchoverRequest).GetTimeoutSeconds())
	got := &drplanev1.SwitchoverResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.True(t, proto.Equal(fixtureSwitchover("dc-a1", "db", ""), got))
	assert.Contains(t, r.stdout, `"block_window": "0.035s"`)
	r = drctl(t, nil, "switchover", "dc-a1/db", "--timeout", "1500ms", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, int32(2), fo.last().(*drplanev1.SwitchoverRequest).GetTimeoutSeconds())

	// Completion offers the topology's clusters.
	r = drctl(t, nil, "__complete", "switchover", "--api", addr, "--token", adminToken, "")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, []string{"dc-a1/db", "dc-b1/db", ":4"}, strings.Fields(r.stdout))

	// The switchover's --timeout replaces the global one in its help.
	r = drctl(t, nil, "switchover", "--help")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "how long to wait for the switchover")
	assert.NotContains(t, r.stdout, "deadline of each API call")
}

func TestSwitchoverErrors(t *testing.T) {
	addr, _ := startFailoverAPI(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no cluster", []string{"switchover", "dc-a1"}, exitUsage, `drctl: invalid cluster "dc-a1": want DC/CLUSTER`},
		{"too many parts", []string{"switchover", "dc-a1/db/x"}, exitUsage, `invalid cluster "dc-a1/db/x"`},
		{"no argument", []string{"switchover"}, exitUsage, "accepts 1 arg(s), received 0"},
		{"timeout too long", []string{"switchover", "dc-a1/db", "--timeout", "6m"}, exitUsage, "invalid --timeout 6m0s: want 1s to 5m0s"},
		{"timeout zero", []string{"switchover", "dc-a1/db", "--timeout", "0s"}, exitUsage, "invalid --timeout 0s"},
		{"already running", []string{"switchover", "dc-a1/busy"}, exitFailure,
			"drctl: switchover so-0 of dc-a1/busy is already RUNNING (code ALREADY_EXISTS)\n"},
		{"agent failed", []string{"switchover", "dc-a1/broken"}, exitFailure,
			"drctl: switchover so-2 of dc-a1/broken failed: replica dc-a1-db2 is 12 transactions behind (code FAILED_PRECONDITION)\n"},
		{"timed out", []string{"switchover", "dc-a1/slow"}, exitFailure, "no HA agent took it up (code DEADLINE_EXCEEDED)\n"},
		{"unknown dc", []string{"switchover", "dc-zz/db"}, exitFailure, "drctl: dc \"dc-zz\" not found (field dc) (code NOT_FOUND)\n"},
		{"role too low", []string{"switchover", "dc-a1/db", "--token", nobodyToken}, exitAuth, "(code PERMISSION_DENIED)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--api", addr, "--token", adminToken}, tt.args...)
			r := drctl(t, nil, args...)
			assert.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestFailoversCommand(t *testing.T) {
	addr, fo := startFailoverAPI(t)
	r := drctl(t, nil, "failovers", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListFailoversRequest{Limit: 50}, fo.last()), "limit 50 by default")
	assert.Regexp(t, `(?m)^ID +KIND +CLUSTER +MASTER +OUTCOME +RTO +RPO +SHIPPED LOST +BLOCK +TRIGGER +ERROR$`, r.stdout)
	rows := readTable(t, r.stdout, "ID")
	require.Len(t, rows, 3)
	assert.Equal(t, map[string]string{"ID": "r3", "KIND": "switchover", "CLUSTER": "dc-a1/db", "MASTER": "dc-a1-db1 -> dc-a1-db2",
		"OUTCOME": "SUCCEEDED", "RTO": "1.5s", "RPO": "0", "SHIPPED LOST": "-", "BLOCK": "35ms", "TRIGGER": "operator:ops", "ERROR": ""}, rows[0])
	assert.Equal(t, map[string]string{"ID": "r2", "KIND": "failover", "CLUSTER": "dc-b1/db", "MASTER": "dc-b1-db1 -> dc-b1-db3",
		"OUTCOME": "SUCCEEDED", "RTO": "4.2s", "RPO": "unknown", "SHIPPED LOST": "4 req", "BLOCK": "-", "TRIGGER": "DeadMaster", "ERROR": ""}, rows[1])
	assert.Equal(t, map[string]string{"ID": "r1", "KIND": "failover", "CLUSTER": "dc-a1/db", "MASTER": "dc-a1-db1 -> -",
		"OUTCOME": "FAILED", "RTO": "-", "RPO": "2", "SHIPPED LOST": "-", "BLOCK": "-", "TRIGGER": "DeadMasterAndSomeReplicas", "ERROR": "no replica is eligible"}, rows[2])

	r = drctl(t, nil, "failovers", "--dc", "dc-a1", "--cluster", "db", "--limit", "1", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListFailoversRequest{Dc: "dc-a1", Cluster: "db", Limit: 1}, fo.last()))
	got := &drplanev1.ListFailoversResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	require.Len(t, got.GetRecords(), 1)
	assert.Equal(t, "r3", got.GetRecords()[0].GetId())

	r = drctl(t, nil, "failovers", "--dc", "dc-none", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no failovers recorded\n", r.stdout)

	r = drctl(t, nil, "failovers", "--limit", "0", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "invalid --limit 0: want 1 to 1000")
}

func TestKillSwitchCommands(t *testing.T) {
	addr, fo := startFailoverAPI(t)
	ks := func(args ...string) result {
		t.Helper()
		return drctl(t, nil, append([]string{"killswitch", "--api", addr, "--token", adminToken}, args...)...)
	}

	r := ks("list")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no kill switches set: automatic failover is on everywhere\n", r.stdout)

	r = ks("set", "--dc", "dc-a1", "--cluster", "db", "--reason", "replacing a disk")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.SetKillSwitchRequest{Dc: "dc-a1", Cluster: "db", Reason: "replacing a disk"}, fo.last()))
	assert.Equal(t, "kill switch set: cluster dc-a1/db (automatic failover stopped there)\n"+
		"  reason: replacing a disk\n  set by ops-admin at 2025-03-01 12:00:00Z\n", r.stdout)
	r = ks("set", "--reason", "game day")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "kill switch set: everywhere (global)")

	r = ks("list")
	require.Equal(t, exitOK, r.code, r.stderr)
	rows := readTable(t, r.stdout, "SCOPE")
	require.Len(t, rows, 2)
	assert.Equal(t, map[string]string{"SCOPE": "cluster/dc-a1/db", "SET BY": "ops-admin", "SET AT": "2025-03-01 12:00:00Z", "REASON": "replacing a disk"}, rows[0])
	assert.Equal(t, "global", rows[1]["SCOPE"])
	r = ks("list", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	got := &drplanev1.ListKillSwitchesResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.Len(t, got.GetKillSwitches(), 2)

	r = ks("clear")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ClearKillSwitchRequest{}, fo.last()))
	assert.Equal(t, "kill switch cleared: everywhere (global) (was set by ops-admin: game day)\n", r.stdout)
	r = ks("clear")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no kill switch was set for everywhere (global)\n", r.stdout)
	r = ks("clear", "--dc", "dc-a1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no kill switch was set for DC dc-a1\n", r.stdout)

	calls := len(fo.calls)
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"set", "--dc", "dc-a1"}, exitUsage, `required flag(s) "reason" not set`},
		{[]string{"set", "--cluster", "db", "--reason", "x"}, exitUsage, "--cluster needs --dc"},
		{[]string{"clear", "--cluster", "db"}, exitUsage, "--cluster needs --dc"},
		{[]string{"set", "--dc", "dc-zz", "--reason", "x"}, exitFailure, "drctl: dc \"dc-zz\" not found (field dc) (code NOT_FOUND)\n"},
		{[]string{"set", "--reason", "x", "--token", nobodyToken}, exitAuth, "(code PERMISSION_DENIED)"},
		{[]string{"flip"}, exitUsage, `unknown command "flip" for "drctl killswitch"`},
	} {
		r := ks(tt.args...)
		assert.Equal(t, tt.code, r.code, "%v: %s", tt.args, r.stderr)
		assert.Contains(t, r.stderr, tt.stderr, "%v", tt.args)
		assert.Empty(t, r.stdout, "%v", tt.args)
	}
	assert.Equal(t, calls+1, len(fo.calls), "only the unknown DC reached the API")
}

func TestRenderFailoverCells(t *testing.T) {
	assert.Equal(t, "-", dur(nil))
	assert.Equal(t, "1.5s", dur(durationpb.New(1500*time.Millisecond)))
	assert.Equal(t, "1m2.346s", dur(durationpb.New(62345678*time.Microsecond)))
	assert.Equal(t, "12.3ms", dur(durationpb.New(12345*time.Microsecond)))
	assert.Equal(t, "800µs", dur(durationpb.New(800*time.Microsecond)))
	assert.Equal(t, "unknown", rpo(-1, true))
	assert.Equal(t, "1 transaction", rpo(1, true))
	assert.Equal(t, "0", rpo(0, false))
	assert.Equal(t, "cluster dc-a1/db", scopeName(scopeOf("dc-a1", "db")))
	assert.Equal(t, "DC dc-a1", scopeName(scopeOf("dc-a1", "")))

	var b strings.Builder
	require.NoError(t, renderSwitchover(&b, &drplanev1.SwitchoverResponse{Intent: &drplanev1.SwitchoverIntent{Id: "so-9", Dc: "dc-a1", Cluster: "db"}}))
	assert.Equal(t, "switchover of dc-a1/db done; the HA agent wrote no failover record\n  intent so-9\n", b.String())
}
