package main

import (
	"context"
	"net"
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

// fakeRepl stands in for the coordinator's ReplicationService (and the
// topology's DC list): fixed answers, requests recorded.
type fakeRepl struct {
	drplanev1.UnimplementedReplicationServiceServer
	drplanev1.UnimplementedTopologyServiceServer

	mu      sync.Mutex
	lists   []*drplanev1.ListDeadLettersRequest
	retries []*drplanev1.RetryDeadLettersRequest
}

func at(m int) *timestamppb.Timestamp {
	return timestamppb.New(time.Date(2025, 3, 1, 12, m, 0, 0, time.UTC))
}

func fixtureReplStatus() *drplanev1.GetReplicationStatusResponse {
	return &drplanev1.GetReplicationStatusResponse{
		Ledger: true, GeneratedAt: at(10),
		Pairs: []*drplanev1.ReplicationPair{
			{OriginDc: "dc-a1", TargetDc: "dc-b1", Reporting: true, Collector: "dc-b1-collector-1", LagP50Ms: 3.21, LagP99Ms: 1250,
				EventsPerSec: 410.55, Pending: 17, Applied: 1200, DeadLettered: 2, Retried: 1, WatermarkAge: durationpb.New(2400 * time.Millisecond)},
			{OriginDc: "dc-b1", TargetDc: "dc-a1"},
		},
		Backlog: []*drplanev1.LedgerBacklog{
			{Dc: "dc-a1", Backlog: 2, Pending: 1, DeadLettered: 1, OldestPendingCapturedAt: at(1)},
			{Dc: "dc-b1"},
		},
	}
}

func fixtureRecord() *drplanev1.LedgerRecord {
	return &drplanev1.LedgerRecord{
		OriginDc: "dc-a1", RequestId: "0-101-4711/7", Gtid: "0-101-4711", Keyspace: "orders", Shard: 7, CapturedAt: at(1),
		Targets: []string{"dc-a2", "dc-b1"}, OutboundSeq: 4711, State: drplanev1.RequestState_REQUEST_STATE_DEAD_LETTERED,
		Attempts: 2, LastRetryAt: at(3),
		TargetStatus: []*drplanev1.LedgerTarget{
			{Dc: "dc-a2", AppliedAt: at(2)},
			{Dc: "dc-b1", DeadLetteredAt: at(2), Error: "apply: unknown column 'colour'"},
		},
	}
}

func (f *fakeRepl) GetTopology(context.Context, *drplanev1.GetTopologyRequest) (*drplanev1.GetTopologyResponse, error) {
	return &drplanev1.GetTopologyResponse{Topology: &drplanev1.Topology{Dcs: []*drplanev1.DataCenter{{Name: "dc-a1"}, {Name: "dc-b1"}, {Name: "dc-zz"}}}}, nil
}

func (f *fakeRepl) GetReplicationStatus(_ context.Context, req *drplanev1.GetReplicationStatusRequest) (*drplanev1.GetReplicationStatusResponse, error) {
	resp := fixtureReplStatus()
	if req.GetDc() == "off" {
		return &drplanev1.GetReplicationStatusResponse{Pairs: resp.GetPairs()}, nil
	}
	return resp, nil
}

func (f *fakeRepl) GetRequest(_ context.Context, req *drplanev1.GetRequestRequest) (*drplanev1.GetRequestResponse, error) {
	if req.GetOriginDc() != "dc-a1" || req.GetRequestId() != "0-101-4711/7" {
		return nil, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "request %q not in the ledger", req.GetOriginDc()+":"+req.GetRequestId())
	}
	return &drplanev1.GetRequestResponse{Record: fixtureRecord()}, nil
}

func (f *fakeRepl) ListDeadLetters(_ context.Context, req *drplanev1.ListDeadLettersRequest) (*drplanev1.ListDeadLettersResponse, error) {
	f.mu.Lock()
	f.lists = append(f.lists, req)
	f.mu.Unlock()
	switch req.GetDc() {
	case "dc-zz":
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cannot reach the JetStream of DC dc-zz")
	case "dc-b1":
		return &drplanev1.ListDeadLettersResponse{Total: 3, More: true, DeadLetters: []*drplanev1.DeadLetter{
			{Dc: "dc-b1", Sequence: 17, Time: at(2), OriginDc: "dc-a1", RequestId: "0-101-4711/7", Keyspace: "orders", Shard: 7,
				Error: "apply: unknown column 'colour'"},
			{Dc: "dc-b1", Sequence: 18, Time: at(3), OriginDc: "dc-a2", Error: "apply: undecodable payload"},
		}}, nil
	}
	return &drplanev1.ListDeadLettersResponse{}, nil
}

func (f *fakeRepl) RetryDeadLetters(_ context.Context, req *drplanev1.RetryDeadLettersRequest) (*drplanev1.RetryDeadLettersResponse, error) {
	f.mu.Lock()
	f.retries = append(f.retries, req)
	f.mu.Unlock()
	resp := &drplanev1.RetryDeadLettersResponse{}
	seqs := req.GetSequences()
	if req.GetAll() {
		seqs = []uint64{17, 18}
	}
	for _, s := range seqs {
		if s == 99 {
			resp.Results = append(resp.Results, &drplanev1.RetriedDeadLetter{Sequence: s, Error: "no dead letter 99 in DLQ_dc_b1"})
			resp.Failed++
			continue
		}
		resp.Results = append(resp.Results, &drplanev1.RetriedDeadLetter{Sequence: s, OriginDc: "dc-a1", RequestId: "r", ReplaySequence: 100 + s})
		resp.Retried++
	}
	return resp, nil
}

// startReplAPI serves the fake with the token checks of drctl_test.go on a
// free loopback port.
func startReplAPI(t *testing.T) (string, *fakeRepl) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	f := &fakeRepl{}
	drplanev1.RegisterReplicationServiceServer(gs, f)
	drplanev1.RegisterTopologyServiceServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), f
}

func TestReplStatus(t *testing.T) {
	addr, _ := startReplAPI(t)
	r := drctl(t, nil, "repl", "status", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	rows := readTable(t, r.stdout, "ORIGIN")
	require.Len(t, rows, 2)
	assert.Equal(t, map[string]string{
		"ORIGIN": "dc-a1", "TARGET": "dc-b1", "LAG P50": "3.2ms", "LAG P99": "1.25s", "EVENTS/S": "410.6", "PENDING": "17",
		"APPLIED": "1200", "RETRIED": "1", "DEAD-LETTERED": "2", "WATERMARK AGE": "2s",
	}, rows[0])
	assert.Equal(t, "-", rows[1]["LAG P50"], "a pair without collector statistics")
	assert.Equal(t, "0", rows[1]["RETRIED"])
	backlog := readTable(t, r.stdout, "DC")
	require.Len(t, backlog, 2)
	assert.Equal(t, map[string]string{"DC": "dc-a1", "BACKLOG": "2", "PENDING": "1", "DEAD-LETTERED": "1",
		"OLDEST PENDING": "2025-03-01 12:01:00Z"}, backlog[0])

	// A coordinator without the ledger.
	r = drctl(t, nil, "repl", "status", "--dc", "off", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "LEDGER BACKLOG\nnot tracked by this coordinator (no nats_url)\n")
	assert.Equal(t, "-", readTable(t, r.stdout, "ORIGIN")[0]["RETRIED"])

	r = drctl(t, nil, "repl", "status", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	got := &drplanev1.GetReplicationStatusResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.True(t, proto.Equal(fixtureReplStatus(), got), "JSON carries the whole answer")
	assert.Contains(t, r.stdout, `"lag_p99_ms": 1250`)
}

func TestReplRequest(t *testing.T) {
	addr, _ := startReplAPI(t)
	r := drctl(t, nil, "repl", "request", "dc-a1:0-101-4711/7", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^request +dc-a1:0-101-4711/7$`, r.stdout)
	assert.Regexp(t, `(?m)^state +DEAD_LETTERED$`, r.stdout)
	assert.Regexp(t, `(?m)^shard +orders/7$`, r.stdout)
	assert.Regexp(t, `(?m)^outbound seq +4711$`, r.stdout)
	assert.Regexp(t, `(?m)^retries +2 \(last 2025-03-01 12:03:00Z\)$`, r.stdout)
	rows := readTable(t, r.stdout, "DC")
	require.Len(t, rows, 2)
	assert.Equal(t, map[string]string{"DC": "dc-a2", "APPLIED": "2025-03-01 12:02:00Z", "DEAD-LETTERED": "-", "ERROR": "-"}, rows[0])
	assert.Equal(t, "apply: unknown column 'colour'", rows[1]["ERROR"])

	r = drctl(t, nil, "repl", "request", "dc-a1:0-101-4711/7", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	got := &drplanev1.GetRequestResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.True(t, proto.Equal(fixtureRecord(), got.GetRecord()))

	r = drctl(t, nil, "repl", "request", "dc-a1:9-9-9/1", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "drctl: request \"dc-a1:9-9-9/1\" not in the ledger (code NOT_FOUND)\n", r.stderr)
	r = drctl(t, nil, "repl", "request", "0-101-4711/7", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "want ORIGIN-DC:REQUEST-ID")
}

func TestReplDLQList(t *testing.T) {
	addr, f := startReplAPI(t)
	r := drctl(t, nil, "repl", "dlq", "list", "--dc", "dc-b1", "--origin", "dc-a1", "--limit", "2", "--after", "5",
		"--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.ListDeadLettersRequest{Dc: "dc-b1", Limit: 2, OriginDc: "dc-a1", AfterSequence: 5}, f.lists[0]))
	rows := readTable(t, r.stdout, "DC")
	require.Len(t, rows, 2)
	assert.Equal(t, map[string]string{"DC": "dc-b1", "SEQ": "17", "TIME": "2025-03-01 12:02:00Z", "ORIGIN": "dc-a1",
		"REQUEST": "0-101-4711/7", "SHARD": "orders/7", "ERROR": "apply: unknown column 'colour'"}, rows[0])
	assert.Equal(t, "-", rows[1]["REQUEST"])
	assert.Contains(t, r.stdout, "\n2 shown, 3 in the dead-letter streams; more: --after 18\n")

	// Every DC: one cannot be reached; the others are shown.
	r = drctl(t, nil, "repl", "dlq", "list", "--api", addr, "--token", adminToken)
	assert.Equal(t, exitFailure, r.code)
	assert.Len(t, readTable(t, r.stdout, "DC"), 2)
	assert.Contains(t, r.stderr, "drctl: cannot reach the JetStream of DC dc-zz (code UNAVAILABLE) (dc dc-zz)\n")
	assert.Contains(t, r.stderr, "drctl: 1 of 3 DCs not listed\n")

	r = drctl(t, nil, "repl", "dlq", "list", "--dc", "dc-a1", "-o", "json", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.JSONEq(t, `{"dead_letters": [], "total": "0", "more": false}`, r.stdout)
	r = drctl(t, nil, "repl", "dlq", "list", "--dc", "dc-a1", "--api", addr, "--token", adminToken)
	assert.Equal(t, "no dead letters\n", r.stdout)

	r = drctl(t, nil, "repl", "dlq", "list", "--limit", "0", "--api", addr)
	assert.Equal(t, exitUsage, r.code)
}

func TestReplDLQRetry(t *testing.T) {
	addr, f := startReplAPI(t)
	base := []string{"--api", addr, "--token", adminToken}
	r := drctl(t, nil, append([]string{"repl", "dlq", "retry", "--dc", "dc-b1", "17", "18"}, base...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.RetryDeadLettersRequest{Dc: "dc-b1", Sequences: []uint64{17, 18}}, f.retries[0]))
	rows := readTable(t, r.stdout, "SEQ")
	require.Len(t, rows, 2)
	assert.Equal(t, "put back (inbound seq 117)", rows[0]["RESULT"])
	assert.Contains(t, r.stdout, "\n2 retried, 0 failed\n")

	r = drctl(t, nil, append([]string{"repl", "dlq", "retry", "--dc", "dc-b1", "--all", "-o", "json"}, base...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, f.retries[1].GetAll())
	got := &drplanev1.RetryDeadLettersResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.Equal(t, int32(2), got.GetRetried())

	// One not retried: shown, and exit 1.
	r = drctl(t, nil, append([]string{"repl", "dlq", "retry", "--dc", "dc-b1", "17", "99"}, base...)...)
	assert.Equal(t, exitFailure, r.code)
	assert.Equal(t, "FAILED: no dead letter 99 in DLQ_dc_b1", readTable(t, r.stdout, "SEQ")[1]["RESULT"])
	assert.Equal(t, "drctl: 1 of 2 dead letters not retried\n", r.stderr)

	// A token without the role.
	r = drctl(t, nil, "repl", "dlq", "retry", "--dc", "dc-b1", "17", "--api", addr, "--token", nobodyToken)
	assert.Equal(t, exitAuth, r.code)

	for _, args := range [][]string{
		{"repl", "dlq", "retry", "17"},
		{"repl", "dlq", "retry", "--dc", "dc-b1"},
		{"repl", "dlq", "retry", "--dc", "dc-b1", "--all", "17"},
		{"repl", "dlq", "retry", "--dc", "dc-b1", "seventeen"},
		{"repl", "dlq", "retry", "--dc", "dc-b1", "0"},
	} {
		r = drctl(t, nil, append(args, base...)...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
	}
	assert.Len(t, f.retries, 3, "usage errors never reach the API")
}
