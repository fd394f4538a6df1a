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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fakeAudit stands in for the coordinator's AuditService: three fixed
// events, pages of PageSize, the page token being the offset.
type fakeAudit struct {
	drplanev1.UnimplementedAuditServiceServer

	mu   sync.Mutex
	reqs []*drplanev1.SearchAuditRequest
}

func (f *fakeAudit) last() *drplanev1.SearchAuditRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func fixtureAuditEvents() []*drplanev1.AuditEvent {
	at := func(m int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2025, 3, 1, 12, m, 0, 0, time.UTC))
	}
	return []*drplanev1.AuditEvent{
		{Id: "e3", Time: at(3), Actor: "haagent:dc-a1-haagent-1", Action: "switchover.run", Target: "dc-a1/main",
			Params: map[string]string{"new_master": "dc-a1-db2"}, Outcome: "OK", RtoMs: 1500},
		{Id: "e2", Time: at(2), Actor: "token:dashboard", Action: "switchover.request", Target: "dc-a1/main", Outcome: "DENIED",
			Error: "PERMISSION_DENIED: /drplane.v1.FailoverService/Switchover needs role operator"},
		{Id: "e1", Time: at(1), Actor: "token:ops-admin", Action: "switchover.request", Target: "dc-a1/main", Outcome: "OK"},
	}
}

func (f *fakeAudit) SearchAudit(_ context.Context, req *drplanev1.SearchAuditRequest) (*drplanev1.SearchAuditResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if req.GetQuery() == "action:(" {
		return nil, apierr.InvalidArgument("query", "bad audit query: unbalanced parenthesis")
	}
	evs := fixtureAuditEvents()
	off := 0
	if req.GetPageToken() != "" {
		off = int(req.GetPageToken()[0] - '0')
	}
	end := min(len(evs), off+int(req.GetPageSize()))
	resp := &drplanev1.SearchAuditResponse{Events: evs[off:end], Total: int64(len(evs))}
	if end < len(evs) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

// startAuditAPI serves the fake audit service with the token checks of
// drctl_test.go on a free loopback port.
func startAuditAPI(t *testing.T) (string, *fakeAudit) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	fa := &fakeAudit{}
	drplanev1.RegisterAuditServiceServer(gs, fa)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), fa
}

func TestAuditSearchTable(t *testing.T) {
	addr, fa := startAuditAPI(t)
	before := time.Now()
	r := drctl(t, nil, "audit", "search", "switchover", "--since", "1h", "--api", addr, "--token", adminToken)
	after := time.Now()
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)

	req := fa.last()
	assert.Equal(t, "switchover", req.GetQuery())
	assert.Equal(t, int32(50), req.GetPageSize(), "50 by default")
	since := req.GetSince().AsTime()
	assert.False(t, since.Before(before.Add(-time.Hour).Add(-time.Second)) || since.After(after.Add(-time.Hour)), "since %s is an hour ago", since)
	assert.Nil(t, req.GetUntil())

	assert.Regexp(t, `(?m)^TIME +ACTOR +ACTION +TARGET +OUTCOME +ERROR$`, r.stdout)
	rows := readTable(t, r.stdout, "TIME")
	require.Len(t, rows, 3)
	assert.Equal(t, map[string]string{
		"TIME": "2025-03-01 12:02:00Z", "ACTOR": "token:dashboard", "ACTION": "switchover.request", "TARGET": "dc-a1/main",
		"OUTCOME": "DENIED", "ERROR": "PERMISSION_DENIED: /drplane.v1.FailoverService/Switchover n…",
	}, rows[1])
	assert.Equal(t, "-", rows[0]["ERROR"])
	assert.Contains(t, r.stdout, "\n3 of 3 events\n")
	assert.NotContains(t, r.stdout, "page-token")
}

func TestAuditSearchFiltersAndPaging(t *testing.T) {
	addr, fa := startAuditAPI(t)
	base := []string{"--api", addr, "--token", adminToken}
	args := append([]string{"audit", "search", "target:dc-a1", "OR", "killswitch",
		"--actor", "token:ops-admin", "--actor", "token:dashboard", "--action", "switchover.request",
		"--since", "2025-03-01T12:00:00Z", "--until", "2025-03-01T13:00:00Z", "--limit", "2"}, base...)
	r := drctl(t, nil, args...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, proto.Equal(&drplanev1.SearchAuditRequest{
		Query: "target:dc-a1 OR killswitch", Actor: []string{"token:ops-admin", "token:dashboard"}, Action: []string{"switchover.request"},
		Since: timestamppb.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)), Until: timestamppb.New(time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC)),
		PageSize: 2,
	}, fa.last()), "sent %v", fa.last())
	assert.Len(t, readTable(t, r.stdout, "TIME"), 2)
	assert.Contains(t, r.stdout, "\n2 of 3 events; next page: --page-token 2\n")

	// The token fetches the rest; JSON carries the whole answer.
	r = drctl(t, nil, append([]string{"audit", "search", "--limit", "2", "--page-token", "2", "-o", "json"}, base...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "2", fa.last().GetPageToken())
	got := &drplanev1.SearchAuditResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	require.Len(t, got.GetEvents(), 1)
	assert.True(t, proto.Equal(fixtureAuditEvents()[2], got.GetEvents()[0]))
	assert.Equal(t, int64(3), got.GetTotal())
	assert.Contains(t, r.stdout, `"next_page_token": ""`, "proto field names, every field present")

	// No match.
	r = drctl(t, nil, append([]string{"audit", "search", "--page-token", "3"}, base...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no audit events found\n", r.stdout)
}

func TestAuditSearchErrors(t *testing.T) {
	addr, _ := startAuditAPI(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"bad query", []string{"audit", "search", "action:("}, exitFailure,
			"drctl: bad audit query: unbalanced parenthesis (field query) (code INVALID_ARGUMENT)\n"},
		{"bad since", []string{"audit", "search", "--since", "yesterday"}, exitUsage, `invalid --since "yesterday": want a duration`},
		{"negative since", []string{"audit", "search", "--since", "-1h"}, exitUsage, "invalid --since -1h: want a positive duration"},
		{"until before since", []string{"audit", "search", "--since", "1h", "--until", "2h"}, exitUsage, "is not after --since"},
		{"limit too large", []string{"audit", "search", "--limit", "1001"}, exitUsage, "invalid --limit 1001: want 1 to 1000"},
		{"limit zero", []string{"audit", "search", "--limit", "0"}, exitUsage, "invalid --limit 0"},
		{"no token", []string{"audit", "search", "--token", ""}, exitAuth, "(code UNAUTHENTICATED)"},
		{"unknown subcommand", []string{"audit", "serch"}, exitUsage, `unknown command "serch" for "drctl audit"`},
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
