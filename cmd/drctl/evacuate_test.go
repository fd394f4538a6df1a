package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fakeEvacuation stands in for the coordinator's EvacuationService and
// DivergenceService. An operation "runs" through a script: WatchOperation
// sends one message per step, each with the operation as it is then.
type fakeEvacuation struct {
	drplanev1.UnimplementedEvacuationServiceServer
	drplanev1.UnimplementedDivergenceServiceServer

	mu    sync.Mutex
	calls []proto.Message
	// final is the state the scripted operation ends in.
	final drplanev1.OperationState
	// replays counts the reads of a reapplied entry: the second shows it
	// REPLAYED.
	replays int
	// breakAfter, when > 0, ends the first watch with a transport error
	// after that many messages.
	breakAfter int
	watches    int
}

func (f *fakeEvacuation) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
}

func (f *fakeEvacuation) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

var fixtureAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fixtureOperation is an evacuation of dc-a1: 4 shards of orders in 2
// waves, the first n of them finished (MOVED, or ABORTED past the first
// three when the script fails).
func (f *fakeEvacuation) fixtureOperation(n int, st drplanev1.OperationState) *drplanev1.Operation {
	op := &drplanev1.Operation{
		Id: "evacuate-1", Kind: drplanev1.OperationKind_OPERATION_KIND_EVACUATE, Dc: "dc-a1", Parallel: 2, State: st,
		RequestedBy: "ops", Reason: "power work", CreatedAt: timestamppb.New(fixtureAt), StartedAt: timestamppb.New(fixtureAt),
		Leader:  "coord-1",
		Targets: []*drplanev1.PlanTarget{{Dc: "dc-b1", Shards: 3, LagMs: 42}, {Dc: "dc-a2", Shards: 1, LagMs: 7.5}},
	}
	to := []string{"dc-b1", "dc-a2", "dc-b1", "dc-b1"}
	t := &drplanev1.OperationTotals{Shards: 4, Waves: 2}
	for i := range 4 {
		h := &drplanev1.Handoff{Keyspace: "orders", Shard: int32(i * 10), FromDc: "dc-a1", ToDc: to[i], BackupDc: "dc-a1",
			Wave: int32(i / 2), State: drplanev1.HandoffState_HANDOFF_STATE_PENDING}
		if i < n {
			h.State, h.Watermark, h.BlockMs, h.Revision = drplanev1.HandoffState_HANDOFF_STATE_MOVED, fmt.Sprintf("1-101-%d", 100+i), int64(30+i), int64(50+i)
			h.FrozenAt, h.DoneAt = timestamppb.New(fixtureAt), timestamppb.New(fixtureAt.Add(time.Duration(30+i)*time.Millisecond))
			if i == 3 && f.final == drplanev1.OperationState_OPERATION_STATE_FAILED {
				h.State, h.Revision, h.Error = drplanev1.HandoffState_HANDOFF_STATE_ABORTED, 0, "catch-up: dc-b1 did not apply up to 1-101-103 within 5s"
				t.Aborted++
			} else {
				t.Moved++
			}
		}
		op.Handoffs = append(op.Handoffs, h)
	}
	t.WavesDone = int32(min(n, 4) / 2)
	if t.Moved > 0 {
		t.BlockP50Ms, t.BlockP99Ms, t.BlockMaxMs = 31, 33, 33
	}
	t.DurationMs = 1250
	op.Totals = t
	if f.final == drplanev1.OperationState_OPERATION_STATE_FAILED && !unfinished(st) {
		op.Error = "wave 1: some handoffs were aborted"
	}
	return op
}

func (f *fakeEvacuation) Evacuate(_ context.Context, req *drplanev1.EvacuateRequest) (*drplanev1.EvacuateResponse, error) {
	f.record(req)
	switch {
	case req.GetDc() == "dc-zz":
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `DC "dc-zz" not found`, Field: "dc"}
	case req.GetTo() == req.GetDc():
		return nil, apierr.InvalidArgument("to", "to must differ from the DC evacuated")
	case req.GetDc() == "dc-busy":
		return nil, (&apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_CONFLICT, Field: "dc",
			Message: "operation evacuate-0 is already running for DC dc-busy: watch, cancel or wait for it (drctl operations show evacuate-0)"}).
			WithMetadata("operation_id", "evacuate-0")
	}
	op := f.fixtureOperation(0, drplanev1.OperationState_OPERATION_STATE_PENDING)
	if req.GetDryRun() {
		op.Id, op.State, op.DryRun, op.StartedAt = "", drplanev1.OperationState_OPERATION_STATE_UNSPECIFIED, true, nil
	}
	return &drplanev1.EvacuateResponse{OperationId: op.GetId(), Operation: op}, nil
}

func (f *fakeEvacuation) Restore(_ context.Context, req *drplanev1.RestoreRequest) (*drplanev1.RestoreResponse, error) {
	f.record(req)
	op := &drplanev1.Operation{Id: "restore-1", Kind: drplanev1.OperationKind_OPERATION_KIND_RESTORE, Dc: req.GetDc(), MoveHome: req.GetMoveHome(),
		Parallel: 64, State: drplanev1.OperationState_OPERATION_STATE_PENDING, Totals: &drplanev1.OperationTotals{}}
	return &drplanev1.RestoreResponse{OperationId: op.GetId(), Operation: op}, nil
}

func (f *fakeEvacuation) ListOperations(_ context.Context, req *drplanev1.ListOperationsRequest) (*drplanev1.ListOperationsResponse, error) {
	f.record(req)
	op := f.fixtureOperation(4, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	op.Handoffs = nil
	return &drplanev1.ListOperationsResponse{Operations: []*drplanev1.Operation{op}}, nil
}

func (f *fakeEvacuation) GetOperation(_ context.Context, req *drplanev1.GetOperationRequest) (*drplanev1.GetOperationResponse, error) {
	f.record(req)
	if req.GetId() != "evacuate-1" {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `operation "` + req.GetId() + `" not found`, Field: "id"}
	}
	return &drplanev1.GetOperationResponse{Operation: f.fixtureOperation(3, drplanev1.OperationState_OPERATION_STATE_RUNNING)}, nil
}

// WatchOperation plays the script: pending, running, each wave's two
// handoffs, the final state.
func (f *fakeEvacuation) WatchOperation(req *drplanev1.WatchOperationRequest, stream grpc.ServerStreamingServer[drplanev1.WatchOperationResponse]) error {
	f.record(req)
	if req.GetId() != "evacuate-1" {
		return &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `operation "` + req.GetId() + `" not found`, Field: "id"}
	}
	f.mu.Lock()
	f.watches++
	first, breakAfter := f.watches == 1, f.breakAfter
	f.mu.Unlock()
	running := drplanev1.OperationState_OPERATION_STATE_RUNNING
	steps := []*drplanev1.Operation{f.fixtureOperation(0, running), f.fixtureOperation(2, running), f.fixtureOperation(4, f.final)}
	if f.final == drplanev1.OperationState_OPERATION_STATE_CANCELED {
		steps[2] = f.fixtureOperation(2, f.final)
	}
	sent := map[int]bool{}
	for i, op := range steps {
		if first && breakAfter > 0 && i == breakAfter {
			return status.Error(codes.Unavailable, "connection reset")
		}
		resp := &drplanev1.WatchOperationResponse{Operation: op}
		for j, h := range op.GetHandoffs() {
			if h.GetState() != drplanev1.HandoffState_HANDOFF_STATE_PENDING && !sent[j] {
				sent[j] = true
				resp.Done = append(resp.Done, h)
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeEvacuation) CancelOperation(_ context.Context, req *drplanev1.CancelOperationRequest) (*drplanev1.CancelOperationResponse, error) {
	f.record(req)
	if req.GetId() == "restore-9" {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Field: "id",
			Message: "operation restore-9 is SUCCEEDED: only a pending or running operation can be canceled"}
	}
	return &drplanev1.CancelOperationResponse{Operation: f.fixtureOperation(2, drplanev1.OperationState_OPERATION_STATE_CANCELING)}, nil
}

func (f *fakeEvacuation) ResumeOperation(_ context.Context, req *drplanev1.ResumeOperationRequest) (*drplanev1.ResumeOperationResponse, error) {
	f.record(req)
	return &drplanev1.ResumeOperationResponse{Operation: f.fixtureOperation(2, drplanev1.OperationState_OPERATION_STATE_PENDING)}, nil
}

func fixtureDivergence() *drplanev1.Divergence {
	return &drplanev1.Divergence{Id: "dc-a1:1-101-42/7", OriginDc: "dc-a1", RequestId: "1-101-42/7", Gtid: "1-101-42", Keyspace: "orders", Shard: 7,
		OwnerDc: "dc-b1", FenceWatermark: "1-101-40", FenceOperationId: "evacuate-1", DetectedBy: "reship@dc-a1",
		DetectedAt: timestamppb.New(fixtureAt.Add(time.Second)), CommitTime: timestamppb.New(fixtureAt), Rows: 1,
		State: drplanev1.DivergenceState_DIVERGENCE_STATE_OPEN}
}

func (f *fakeEvacuation) ListDivergence(_ context.Context, req *drplanev1.ListDivergenceRequest) (*drplanev1.ListDivergenceResponse, error) {
	f.record(req)
	if req.GetOriginDc() == "dc-b1" {
		return &drplanev1.ListDivergenceResponse{}, nil
	}
	return &drplanev1.ListDivergenceResponse{Entries: []*drplanev1.Divergence{fixtureDivergence()}, Total: 3}, nil
}

func (f *fakeEvacuation) GetDivergence(_ context.Context, req *drplanev1.GetDivergenceRequest) (*drplanev1.GetDivergenceResponse, error) {
	f.record(req)
	if req.GetId() == "dc-a1:reapplied" {
		f.mu.Lock()
		f.replays++
		n := f.replays
		f.mu.Unlock()
		e := fixtureDivergence()
		e.Id = req.GetId()
		e.State = drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING
		e.Resolution = &drplanev1.DivergenceResolution{Action: "reapply", ResolvedBy: "oncall", TargetDc: "dc-b1"}
		if n > 1 {
			e.State = drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYED
			e.Resolution.Detail, e.Resolution.ReplayGtid = "applied: 1 rows, each as the change found it", "2-201-7"
			e.Resolution.FinishedAt = timestamppb.New(fixtureAt)
		}
		return &drplanev1.GetDivergenceResponse{Entry: e}, nil
	}
	return &drplanev1.GetDivergenceResponse{Entry: fixtureDivergence(), Change: &drplanev1.ChangeEvent{Schema: "shop", Table: "orders",
		Rows: []*drplanev1.RowChange{{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 9001}}}}}}}}, nil
}

func (f *fakeEvacuation) ResolveDivergence(_ context.Context, req *drplanev1.ResolveDivergenceRequest) (*drplanev1.ResolveDivergenceResponse, error) {
	f.record(req)
	if req.GetId() == "dc-a1:done" {
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "divergence dc-a1:done is resolved already")
	}
	e := fixtureDivergence()
	e.State = drplanev1.DivergenceState_DIVERGENCE_STATE_DISCARDED
	res := &drplanev1.DivergenceResolution{Action: req.GetAction(), ResolvedBy: "oncall", Reason: req.GetReason(),
		ResolvedAt: timestamppb.New(fixtureAt.Add(time.Minute)), OperationId: "op-9"}
	if req.GetAction() == "reapply" {
		e.State, res.TargetDc = drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING, "dc-b1"
	}
	e.Resolution = res
	e.Id = req.GetId()
	return &drplanev1.ResolveDivergenceResponse{Entry: e, OperationId: "op-9"}, nil
}

// startEvacuationAPI serves the fake with the token checks of drctl_test.go.
func startEvacuationAPI(t *testing.T, final drplanev1.OperationState) (string, *fakeEvacuation) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	f := &fakeEvacuation{final: final}
	drplanev1.RegisterEvacuationServiceServer(gs, f)
	drplanev1.RegisterDivergenceServiceServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), f
}

// drctlOnTerminal runs drctl as if stdout were a terminal.
func drctlOnTerminal(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, terminal: func(io.Writer) bool { return true }}
	code := a.execute(context.Background(), args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestEvacuateDryRunAndStart(t *testing.T) {
	addr, f := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"evacuate", "dc-a1", "--dry-run", "--wave", "2"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `plan (dry run, nothing changed): evacuate dc-a1, 4 shards in 2 waves of up to 2
TARGET  SHARDS  LAG P99 (about the block per wave)
dc-b1   3       42ms
dc-a2   1       8ms
WAVE  KEYSPACE  SHARDS  TO
0     orders    2       dc-a2 1, dc-b1 1
1     orders    2       dc-b1 2
`, r.stdout)
	assert.True(t, proto.Equal(&drplanev1.EvacuateRequest{Dc: "dc-a1", DryRun: true, Parallel: 2}, f.last()), "--wave is --parallel: %v", f.last())

	r = drctl(t, nil, append([]string{"evacuate", "dc-a1", "--to", "dc-b1", "--parallel", "64", "--reason", "power work"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "operation evacuate-1 stored: evacuate dc-a1, 4 shards in 2 waves; the coordinator leader runs it\n"+
		"  follow: drctl operations watch evacuate-1\n  cancel: drctl operations cancel evacuate-1\n", r.stdout)
	assert.True(t, proto.Equal(&drplanev1.EvacuateRequest{Dc: "dc-a1", To: "dc-b1", Parallel: 64, Reason: "power work"}, f.last()), "%v", f.last())

	r = drctl(t, nil, append([]string{"evacuate", "dc-a1", "-o", "json"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	var op struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Handoffs []struct {
			Shard int `json:"shard"`
		} `json:"handoffs"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &op), r.stdout)
	assert.Equal(t, "evacuate-1", op.ID)
	assert.Equal(t, "OPERATION_STATE_PENDING", op.State)
	assert.Len(t, op.Handoffs, 4)

	r = drctl(t, nil, append([]string{"restore", "dc-a1", "--move-home", "--reason", "done"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "operation restore-1 stored: restore dc-a1 with move-home, 0 shards in 0 waves")
	assert.True(t, proto.Equal(&drplanev1.RestoreRequest{Dc: "dc-a1", MoveHome: true, Reason: "done"}, f.last()), "%v", f.last())
}

func TestEvacuateErrors(t *testing.T) {
	addr, _ := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	api := []string{"--api", addr, "--token", adminToken}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown DC", []string{"evacuate", "dc-zz"}, exitFailure, "drctl: DC \"dc-zz\" not found (field dc) (code NOT_FOUND)\n"},
		{"to itself", []string{"evacuate", "dc-a1", "--to", "dc-a1"}, exitFailure, "drctl: to must differ from the DC evacuated (field to) (code INVALID_ARGUMENT)\n"},
		{"already running", []string{"evacuate", "dc-busy", "--wait"}, exitFailure,
			"drctl: operation evacuate-0 is already running for DC dc-busy: watch, cancel or wait for it (drctl operations show evacuate-0) (field dc) (code CONFLICT)\n"},
		{"parallel too large", []string{"evacuate", "dc-a1", "--parallel", "5000"}, exitUsage, "drctl: invalid --parallel 5000: want 1 to 4096 shards per wave\n"},
		{"dry run and wait", []string{"evacuate", "dc-a1", "--dry-run", "--wait"}, exitUsage, "[dry-run wait] were all set"},
		{"no DC", []string{"restore"}, exitUsage, "accepts 1 arg(s), received 0"},
		{"cancel a finished one", []string{"operations", "cancel", "restore-9"}, exitFailure,
			"drctl: operation restore-9 is SUCCEEDED: only a pending or running operation can be canceled (field id) (code FAILED_PRECONDITION)\n"},
		{"watch an unknown one", []string{"operations", "watch", "evacuate-7"}, exitFailure, "drctl: operation \"evacuate-7\" not found (field id) (code NOT_FOUND)\n"},
		{"bad kind", []string{"operations", "list", "--kind", "flip"}, exitUsage, "want evacuate, restore, move_shard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := drctl(t, nil, append(tt.args, api...)...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
			assert.Empty(t, r.stdout)
		})
	}
	// A token without the operator role.
	r := drctl(t, nil, "evacuate", "dc-a1", "--api", addr, "--token", nobodyToken)
	assert.Equal(t, exitAuth, r.code, r.stderr)
}

func TestEvacuateWaitPlainLines(t *testing.T) {
	addr, _ := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	r := drctl(t, nil, "evacuate", "dc-a1", "--wait", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	// The state lines and the handoff lines start with the time of day.
	var handoffs []string
	for _, l := range lines {
		if strings.Contains(l, " wave ") {
			handoffs = append(handoffs, l[9:])
		}
	}
	assert.Equal(t, []string{
		"wave 0 orders/0 dc-a1 -> dc-b1 MOVED block 30ms watermark 1-101-100",
		"wave 0 orders/10 dc-a1 -> dc-a2 MOVED block 31ms watermark 1-101-101",
		"wave 1 orders/20 dc-a1 -> dc-b1 MOVED block 32ms watermark 1-101-102",
		"wave 1 orders/30 dc-a1 -> dc-b1 MOVED block 33ms watermark 1-101-103",
	}, handoffs)
	assert.Contains(t, lines[0], "evacuate dc-a1: RUNNING, 4 shards in 2 waves")
	assert.Contains(t, r.stdout, "operation evacuate-1 SUCCEEDED: evacuate dc-a1, 4 shards: 4 moved, 0 skipped, 0 aborted; 2/2 waves in 1.25s\n"+
		"  block per shard: p50 31ms, p99 33ms, max 33ms; router acknowledgements missed: 0\n")
}

func TestEvacuateWaitJSONLines(t *testing.T) {
	addr, _ := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	r := drctl(t, nil, "evacuate", "dc-a1", "--wait", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4, "one object per handoff:\n%s", r.stdout)
	var got []handoffLine
	for _, l := range lines {
		var h handoffLine
		require.NoError(t, json.Unmarshal([]byte(l), &h), l)
		got = append(got, h)
	}
	assert.Equal(t, "evacuate-1", got[0].Operation)
	assert.Equal(t, int32(10), got[1].Shard)
	assert.Equal(t, "dc-a2", got[1].To)
	assert.Equal(t, "MOVED", got[3].Outcome)
	assert.Equal(t, "1-101-103", got[3].Watermark)
	assert.Equal(t, int64(33), got[3].BlockMs)
	require.NotNil(t, got[3].DoneAt)
	assert.Equal(t, fixtureAt.Add(33*time.Millisecond), *got[3].DoneAt)
	assert.Contains(t, r.stderr, "operation evacuate-1 SUCCEEDED", "the summary goes to stderr")
}

func TestEvacuateWaitProgressBar(t *testing.T) {
	addr, _ := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	r := drctlOnTerminal(t, "evacuate", "dc-a1", "--wait", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "evacuate dc-a1 SUCCEEDED wave 2/2 100% |")
	assert.Contains(t, r.stdout, "| (4/4)", "the bar counts shards")
	assert.Contains(t, r.stdout, "operation evacuate-1 SUCCEEDED")
	assert.NotContains(t, r.stdout, "watermark", "no line per moved shard under a bar")
}

func TestWaitOutcomes(t *testing.T) {
	addr, _ := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_CANCELED)
	r := drctl(t, nil, "operations", "watch", "evacuate-1", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitCanceled, r.code, r.stderr)
	assert.Equal(t, "drctl: operation evacuate-1 was canceled\n", r.stderr)
	assert.Contains(t, r.stdout, "operation evacuate-1 CANCELED: evacuate dc-a1, 4 shards: 2 moved")
	assert.Contains(t, r.stdout, "dc-a1 stays DRAINING (no shard is moved into it) and still owns the 2 shards not handed off, unfrozen;\n"+
		"  go on with drctl operations resume evacuate-1, or undo with drctl restore dc-a1 [--move-home]\n")

	addr, _ = startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_FAILED)
	r = drctlOnTerminal(t, "operations", "watch", "evacuate-1", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitFailure, r.code, r.stderr)
	assert.Equal(t, "drctl: operation evacuate-1 FAILED: wave 1: some handoffs were aborted (drctl operations resume evacuate-1 goes on)\n", r.stderr)
	assert.Contains(t, r.stdout, "wave 1 orders/30 dc-a1 -> dc-b1 ABORTED: catch-up: dc-b1 did not apply up to 1-101-103 within 5s\n",
		"a handoff that did not move is printed above the bar")
	assert.Contains(t, r.stdout, "  error: wave 1: some handoffs were aborted\n")
}

func TestWaitSurvivesABrokenStream(t *testing.T) {
	addr, f := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	f.breakAfter = 2
	r := drctl(t, nil, "evacuate", "dc-a1", "--wait", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 2, f.watches, "watched again after the break")
	assert.Len(t, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"), 4, "each handoff once, though the second watch sends them all again:\n%s", r.stdout)
}

func TestOperationsCommands(t *testing.T) {
	addr, f := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"operations", "list", "--running", "--kind", "evacuate", "--limit", "5"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListOperationsRequest{Kind: drplanev1.OperationKind_OPERATION_KIND_EVACUATE, RunningOnly: true, PageSize: 5}, f.last()), "%v", f.last())
	rows := readTable(t, r.stdout, "ID")
	require.Len(t, rows, 1)
	assert.Equal(t, map[string]string{"ID": "evacuate-1", "KIND": "evacuate", "DC": "dc-a1", "TO": "-", "STATE": "SUCCEEDED", "SHARDS": "4",
		"MOVED": "4", "WAVES": "2/2", "BLOCK P99": "33ms", "DURATION": "1.25s", "CREATED": "2025-03-01 12:00:00Z", "BY": "ops", "ERROR": ""}, rows[0])

	r = drctl(t, nil, append([]string{"ops", "show", "evacuate-1"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "operation evacuate-1 RUNNING: evacuate dc-a1, 4 shards: 3 moved")
	assert.Contains(t, r.stdout, "  requested by ops at 2025-03-01 12:00:00Z: power work\n")
	rows = readTable(t, r.stdout, "WAVE")
	require.Len(t, rows, 4)
	assert.Equal(t, map[string]string{"WAVE": "1", "KEYSPACE": "orders", "SHARD": "20", "FROM": "dc-a1", "TO": "dc-b1", "BACKUP": "dc-a1",
		"STATE": "MOVED", "BLOCK": "32ms", "WATERMARK": "1-101-102", "REVISION": "52", "ERROR": ""}, rows[2])
	assert.Equal(t, "PENDING", rows[3]["STATE"])
	assert.Equal(t, "-", rows[3]["BLOCK"])

	r = drctl(t, nil, append([]string{"operations", "cancel", "evacuate-1", "--reason", "storm passed"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "canceling operation evacuate-1 (evacuate dc-a1): CANCELING; it stops after its current wave, leaving every shard moved or unfrozen at its old owner\n"+
		"  follow: drctl operations watch evacuate-1\n", r.stdout)
	assert.True(t, proto.Equal(&drplanev1.CancelOperationRequest{Id: "evacuate-1", Reason: "storm passed"}, f.last()), "%v", f.last())

	r = drctl(t, nil, append([]string{"operations", "resume", "evacuate-1", "--wait"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "operation evacuate-1 SUCCEEDED")
}

func TestDivergenceCommands(t *testing.T) {
	addr, f := startEvacuationAPI(t, drplanev1.OperationState_OPERATION_STATE_SUCCEEDED)
	api := []string{"--api", addr, "--token", adminToken}

	r := drctl(t, nil, append([]string{"divergence", "list", "--origin", "dc-a1", "--keyspace", "orders", "--limit", "1"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListDivergenceRequest{OriginDc: "dc-a1", Keyspace: "orders", PageSize: 1}, f.last()), "%v", f.last())
	rows := readTable(t, r.stdout, "ID")
	require.Len(t, rows, 1)
	assert.Equal(t, map[string]string{"ID": "dc-a1:1-101-42/7", "STATE": "OPEN", "RESOLVER": "-", "KIND": "fenced", "SHARD": "orders/7", "ORIGIN": "dc-a1", "OWNER": "dc-b1",
		"GTID": "1-101-42", "ROWS": "1", "COMMITTED": "2025-03-01 12:00:00Z", "DETECTED": "2025-03-01 12:00:01Z", "BY": "reship@dc-a1",
		"FENCE": "1-101-40", "OPERATION": "evacuate-1"}, rows[0])
	assert.Contains(t, r.stdout, "3 entries, newest first, 1 shown\n")

	r = drctl(t, nil, append([]string{"divergence", "list", "--origin", "dc-b1"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no divergence recorded: no change was refused after a handoff or lost by a failover after it was shipped\n", r.stdout)

	r = drctl(t, nil, append([]string{"divergence", "list", "-o", "json"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"fence_operation_id": "evacuate-1"`)

	r = drctl(t, nil, append([]string{"divergence", "show", "dc-a1:1-101-42/7"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "divergence dc-a1:1-101-42/7 OPEN: orders/7, captured by dc-a1 after it handed the shard to dc-b1\n")
	assert.Contains(t, r.stdout, "  INSERT  shop.orders  id=9001\n")

	r = drctl(t, nil, append([]string{"divergence", "list", "--limit", "0"}, api...)...)
	assert.Equal(t, exitUsage, r.code)

	r = drctl(t, nil, append([]string{"divergence", "resolve", "dc-a1:1-101-42/7", "--action", "discard", "--reason", "superseded"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ResolveDivergenceRequest{Id: "dc-a1:1-101-42/7", Action: "discard", Reason: "superseded"}, f.last()), "%v", f.last())
	assert.Equal(t, "divergence dc-a1:1-101-42/7 DISCARDED by oncall (operation op-9)\n", r.stdout)
	r = drctl(t, nil, append([]string{"divergence", "resolve", "dc-a1:1-101-42/7", "--action", "reapply", "--reason", "lost order"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "divergence dc-a1:1-101-42/7 REPLAYING by oncall (operation op-9)\n  dc-b1's collector reapplies it")
	r = drctl(t, nil, append([]string{"divergence", "resolve", "dc-a1:reapplied", "--action", "reapply", "--reason", "lost order", "--wait"}, api...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "divergence dc-a1:reapplied REPLAYED by oncall (operation op-9)\n"+
		"  reapply at dc-b1: applied: 1 rows, each as the change found it (GTID 2-201-7, 2025-03-01 12:00:00Z)\n", r.stdout)
	r = drctl(t, nil, append([]string{"divergence", "resolve", "dc-a1:done", "--action", "discard", "--reason", "x"}, api...)...)
	assert.NotEqual(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "FAILED_PRECONDITION")
	for _, bad := range [][]string{
		{"dc-a1:x", "--action", "undo", "--reason", "x"},
		{"dc-a1:x", "--action", "discard", "--reason", " "},
		{"dc-a1:x", "--reason", "x"},
	} {
		r = drctl(t, nil, append(append([]string{"divergence", "resolve"}, bad...), api...)...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}
}

func TestRenderResolvedDivergence(t *testing.T) {
	var out bytes.Buffer
	e := fixtureDivergence()
	e.State = drplanev1.DivergenceState_DIVERGENCE_STATE_CONFLICT
	e.Resolution = &drplanev1.DivergenceResolution{Action: "reapply", ResolvedBy: "oncall", Reason: "lost order", OperationId: "op-9",
		ResolvedAt: timestamppb.New(fixtureAt), TargetDc: "dc-b1", Detail: "row id=9001 at dc-b1 differs from the change's before image"}
	require.NoError(t, renderDivergence(&out, &drplanev1.GetDivergenceResponse{Entry: e}))
	assert.Contains(t, out.String(), "  resolved: reapply by oncall at 2025-03-01 12:00:00Z (operation op-9): lost order\n")
	assert.Contains(t, out.String(), "  reapply at dc-b1: row id=9001 at dc-b1 differs from the change's before image\n")
	out.Reset()
	require.NoError(t, renderDivergences(&out, &drplanev1.ListDivergenceResponse{Entries: []*drplanev1.Divergence{e}, Total: 1}))
	rows := readTable(t, out.String(), "ID")
	require.Len(t, rows, 1)
	assert.Equal(t, "CONFLICT", rows[0]["STATE"])
	assert.Equal(t, "oncall", rows[0]["RESOLVER"])
}

func TestRenderDiscardedDivergence(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, renderDivergence(&out, &drplanev1.GetDivergenceResponse{Entry: &drplanev1.Divergence{
		Id: "dc-a1:1-101-50/3", State: drplanev1.DivergenceState_DIVERGENCE_STATE_OPEN, Keyspace: "orders", Shard: 3,
		OriginDc: "dc-a1", OwnerDc: "dc-a1", Gtid: "1-101-50", Kind: "discarded", FailoverId: "fo-1",
	}}))
	assert.Contains(t, out.String(),
		"divergence dc-a1:1-101-50/3 OPEN: orders/3, shipped by dc-a1, then lost there by failover fo-1 (other DCs may hold it; owner dc-a1)\n")
}
