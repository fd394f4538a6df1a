package auditlog

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/server"
)

const (
	adminToken  = "admin-secret-token"
	viewerToken = "viewer-secret-token"
	callTimeout = 10 * time.Second
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// api is a coordinator API server with AuditService and the
// unauthenticated-call auditor over a real etcd and an embedded store.
type api struct {
	st    *state.Store
	docs  docstore.Store
	audit drplanev1.AuditServiceClient
	base  string
	reg   *prometheus.Registry
	ref   *Refusals
}

type apiOpts struct {
	docs docstore.Store // default: a fresh in-memory store with an indexer
	now  func() time.Time
}

func startAPI(t *testing.T, o apiOpts) *api {
	t.Helper()
	st := newEtcd(t)
	if o.docs == nil {
		o.docs = openStore(t, "")
		startIndexer(t, Options{Store: st, Docs: o.docs, ID: "coord-test"})
	}
	authn, err := auth.New([]auth.Token{
		{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
		{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
	}, server.Policy())
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	unauth := NewUnauthenticated(UnauthenticatedOptions{
		Store: st, Source: "coord-test", Now: o.now, Registerer: reg, Logger: zerolog.Nop(),
	})
	srv := server.New(server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Auth: authn,
		Topology: &control.Topology{Store: st}, Audit: NewSearch(o.docs, ""),
		PreAuth: []grpc.UnaryServerInterceptor{unauth.Unary()}, PreAuthStream: []grpc.StreamServerInterceptor{unauth.Stream()},
		RefusedREST: unauth.REST,
		Logger:      zerolog.Nop(),
	})
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(callTimeout):
			t.Error("server did not stop")
		}
	})
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &api{st: st, docs: o.docs, audit: drplanev1.NewAuditServiceClient(conn), base: "http://" + srv.HTTPAddr(), reg: reg, ref: unauth.Refusals()}
}

func bearer(t *testing.T, token string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (a *api) get(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: callTimeout}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// field returns the offending field an API error names.
func field(t *testing.T, err error) string {
	t.Helper()
	s, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()[apierr.FieldKey]
		}
	}
	t.Fatalf("status %v has no ErrorInfo", s)
	return ""
}

// seedEvents puts a fixed set of events in the outbox and waits until the
// API finds them all. Times are base+i minutes.
func (a *api) seedEvents(t *testing.T, base time.Time) []audit.Event {
	t.Helper()
	mk := func(i int, actor, action, target, outcome string) audit.Event {
		at := base.Add(time.Duration(i) * time.Minute)
		return audit.Event{ID: audit.NewID(at, "seed", uint64(i)), Time: at, Actor: actor, Action: action, Target: target,
			Params: map[string]string{"n": string(rune('a' + i))}, Outcome: outcome}
	}
	evs := []audit.Event{
		mk(0, "token:ops-admin", "killswitch.set", "dc-a1", audit.OutcomeOK),
		mk(1, "token:ops-admin", "switchover.request", "dc-a1/main", audit.OutcomeOK),
		mk(2, "haagent:dc-a1-haagent-1", "switchover.run", "dc-a1/main", audit.OutcomeOK),
		mk(3, "token:dashboard", "switchover.request", "dc-b1/main", audit.OutcomeDenied),
		mk(4, "haagent:dc-b1-haagent-1", "failover.automatic", "dc-b1/main", audit.OutcomeFailed),
	}
	evs[4].Error = "no replica is eligible"
	out := audit.NewOutbox(a.st)
	for _, e := range evs {
		require.NoError(t, out.Put(t.Context(), e))
	}
	check.For(t, waitFor, 20*time.Millisecond, func() error {
		resp, err := a.audit.SearchAudit(bearer(t, viewerToken), &drplanev1.SearchAuditRequest{})
		if err != nil {
			return err
		}
		return check.That(resp.GetTotal() == int64(len(evs)), "resp.GetTotal() = %v, want int64(len(evs))", resp.GetTotal())
	})
	return evs
}

func eventIDs(evs []*drplanev1.AuditEvent) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.GetId())
	}
	return out
}

func TestSearchAuditGRPC(t *testing.T) {
	a := startAPI(t, apiOpts{})
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	evs := a.seedEvents(t, base)
	search := func(req *drplanev1.SearchAuditRequest) (*drplanev1.SearchAuditResponse, error) {
		return a.audit.SearchAudit(bearer(t, viewerToken), req)
	}

	resp, err := search(&drplanev1.SearchAuditRequest{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), resp.GetTotal())
	assert.Equal(t, []string{evs[4].ID, evs[3].ID, evs[2].ID, evs[1].ID, evs[0].ID}, eventIDs(resp.GetEvents()), "newest first")
	assert.Empty(t, resp.GetNextPageToken())
	failed := resp.GetEvents()[0]
	assert.Equal(t, "failover.automatic", failed.GetAction())
	assert.Equal(t, "FAILED", failed.GetOutcome())
	assert.Equal(t, "no replica is eligible", failed.GetError())
	assert.Equal(t, map[string]string{"n": "e"}, failed.GetParams())

	tests := []struct {
		name string
		req  *drplanev1.SearchAuditRequest
		want []audit.Event
	}{
		{"bare word finds both halves of a switchover", &drplanev1.SearchAuditRequest{Query: "switchover"},
			[]audit.Event{evs[3], evs[2], evs[1]}},
		{"field query", &drplanev1.SearchAuditRequest{Query: `target:"dc-a1/main" AND outcome:OK`},
			[]audit.Event{evs[2], evs[1]}},
		{"words of the error", &drplanev1.SearchAuditRequest{Query: "eligible"}, []audit.Event{evs[4]}},
		{"actor filter, any of", &drplanev1.SearchAuditRequest{Actor: []string{"token:ops-admin", "token:dashboard"}},
			[]audit.Event{evs[3], evs[1], evs[0]}},
		{"action filter", &drplanev1.SearchAuditRequest{Action: []string{"switchover.request"}},
			[]audit.Event{evs[3], evs[1]}},
		{"actor and action filters together", &drplanev1.SearchAuditRequest{Actor: []string{"token:ops-admin"}, Action: []string{"switchover.request"}},
			[]audit.Event{evs[1]}},
		{"an action is matched whole", &drplanev1.SearchAuditRequest{Action: []string{"switchover"}}, nil},
		{"since is inclusive, until exclusive", &drplanev1.SearchAuditRequest{
			Since: timestamppb.New(base.Add(time.Minute)), Until: timestamppb.New(base.Add(3 * time.Minute))},
			[]audit.Event{evs[2], evs[1]}},
		{"query and time range", &drplanev1.SearchAuditRequest{Query: "switchover", Since: timestamppb.New(base.Add(2 * time.Minute))},
			[]audit.Event{evs[3], evs[2]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := search(tt.req)
			require.NoError(t, err)
			want := []string{}
			for _, e := range tt.want {
				want = append(want, e.ID)
			}
			assert.Equal(t, want, eventIDs(resp.GetEvents()))
			assert.Equal(t, int64(len(want)), resp.GetTotal())
		})
	}

	t.Run("paging visits every event once", func(t *testing.T) {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 5)
			resp, err := search(&drplanev1.SearchAuditRequest{PageSize: 2, PageToken: token})
			require.NoError(t, err)
			assert.Equal(t, int64(5), resp.GetTotal(), "the total counts every match, not the page")
			assert.LessOrEqual(t, len(resp.GetEvents()), 2)
			got = append(got, eventIDs(resp.GetEvents())...)
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		assert.Equal(t, []string{evs[4].ID, evs[3].ID, evs[2].ID, evs[1].ID, evs[0].ID}, got)
	})

	bad := []struct {
		name, field string
		req         *drplanev1.SearchAuditRequest
	}{
		{"unbalanced query", "query", &drplanev1.SearchAuditRequest{Query: "action:(switchover"}},
		{"regular expressions are refused", "query", &drplanev1.SearchAuditRequest{Query: "actor:/tok.*/"}},
		{"garbage page token", "page_token", &drplanev1.SearchAuditRequest{PageToken: "not-a-token"}},
		{"negative page size", "page_size", &drplanev1.SearchAuditRequest{PageSize: -1}},
		{"page size too large", "page_size", &drplanev1.SearchAuditRequest{PageSize: 1001}},
		{"until before since", "until", &drplanev1.SearchAuditRequest{Since: timestamppb.New(base), Until: timestamppb.New(base.Add(-time.Second))}},
		{"empty actor", "actor", &drplanev1.SearchAuditRequest{Actor: []string{""}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := search(tt.req)
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Equal(t, tt.field, field(t, err))
		})
	}

	// A query beyond the store's limits is refused naming the limit, before
	// any parser recursion (4 MiB of '(' used to overflow the stack and kill
	// the coordinator; the gRPC message limit stops that size here, so the
	// test sends 1 MiB).
	for name, q := range map[string]string{
		"MaxTextBytes": strings.Repeat("(", 1<<20),
		"MaxNesting":   strings.Repeat("(", docstore.MaxNesting+1) + "a" + strings.Repeat(")", docstore.MaxNesting+1),
	} {
		t.Run("limit "+name, func(t *testing.T) {
			_, err := search(&drplanev1.SearchAuditRequest{Query: q})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Equal(t, "query", field(t, err))
			assert.Contains(t, status.Convert(err).Message(), name)
		})
	}

	_, err = a.audit.SearchAudit(bearer(t, ""), &drplanev1.SearchAuditRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestSearchAuditREST(t *testing.T) {
	a := startAPI(t, apiOpts{})
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	evs := a.seedEvents(t, base)

	type page struct {
		Events []struct {
			ID      string            `json:"id"`
			Time    string            `json:"time"`
			Actor   string            `json:"actor"`
			Action  string            `json:"action"`
			Target  string            `json:"target"`
			Params  map[string]string `json:"params"`
			Outcome string            `json:"outcome"`
		} `json:"events"`
		Total         string `json:"total"`
		NextPageToken string `json:"next_page_token"`
	}
	q := url.Values{}
	q.Set("query", "switchover")
	q.Set("since", base.Add(time.Minute).Format(time.RFC3339))
	q.Set("page_size", "2")
	code, body := a.get(t, "/v1/audit?"+q.Encode(), viewerToken)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	var p page
	require.NoError(t, json.Unmarshal(body, &p), "body: %s", body)
	assert.Equal(t, "3", p.Total, "int64 is a JSON string")
	require.Len(t, p.Events, 2)
	assert.Equal(t, evs[3].ID, p.Events[0].ID)
	assert.Equal(t, "token:dashboard", p.Events[0].Actor)
	assert.Equal(t, "switchover.request", p.Events[0].Action)
	assert.Equal(t, "DENIED", p.Events[0].Outcome)
	assert.Equal(t, "2025-03-01T12:03:00Z", p.Events[0].Time)
	assert.Equal(t, map[string]string{"n": "d"}, p.Events[0].Params)
	require.NotEmpty(t, p.NextPageToken)

	q.Set("page_token", p.NextPageToken)
	code, body = a.get(t, "/v1/audit?"+q.Encode(), viewerToken)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	p = page{}
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, p.Events, 1)
	assert.Equal(t, evs[1].ID, p.Events[0].ID)
	assert.Empty(t, p.NextPageToken)

	// Repeated filters.
	code, body = a.get(t, "/v1/audit?actor=token:ops-admin&actor=token:dashboard&action=switchover.request", viewerToken)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	p = page{}
	require.NoError(t, json.Unmarshal(body, &p))
	assert.Equal(t, "2", p.Total)

	// A bad query is a 400 naming the field.
	code, body = a.get(t, "/v1/audit?query="+url.QueryEscape("action:(x"), viewerToken)
	require.Equal(t, http.StatusBadRequest, code, "body: %s", body)
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	require.NoError(t, json.Unmarshal(body, &st))
	assert.Equal(t, int(codes.InvalidArgument), st.Code)
	require.Len(t, st.Details, 1)
	assert.Equal(t, "INVALID_ARGUMENT", st.Details[0].Reason)
	assert.Equal(t, "query", st.Details[0].Metadata[apierr.FieldKey])
	assert.Contains(t, st.Message, "bad audit query")
}

func TestSearchAuditStoreDown(t *testing.T) {
	docs := openStore(t, "")
	require.NoError(t, docs.EnsureIndex(t.Context(), DefaultIndex, Mapping()))
	a := startAPI(t, apiOpts{docs: docs})
	_, err := a.audit.SearchAudit(bearer(t, viewerToken), &drplanev1.SearchAuditRequest{})
	require.NoError(t, err)
	require.NoError(t, docs.Close())
	_, err = a.audit.SearchAudit(bearer(t, viewerToken), &drplanev1.SearchAuditRequest{Query: "x"})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "audit store is unavailable")
}

// TestUnauthenticatedCallsAudited: a REST call without a token, or with an
// unknown one, is refused with 401 and audited; the event names the token
// only by a prefix of its hash. Both calls come from one address, so the
// second is written with the aggregate at the end of the window.
func TestUnauthenticatedCallsAudited(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	a := startAPI(t, apiOpts{now: clock.Now})
	code, _ := a.get(t, "/v1/status", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = a.get(t, "/v1/topology", "wrong-secret")
	require.Equal(t, http.StatusUnauthorized, code)
	clock.Add(DefaultRefusalWindow)
	a.ref.Flush(t.Context())

	var resp *drplanev1.SearchAuditResponse
	check.For(t, waitFor, 20*time.Millisecond, func() error {
		var err error
		resp, err = a.audit.SearchAudit(bearer(t, viewerToken), &drplanev1.SearchAuditRequest{Action: []string{ActionUnauthenticated}})
		if err != nil {
			return err
		}
		return check.That(len(resp.GetEvents()) == 2, "events: %v", resp)
	})
	byTarget := map[string]*drplanev1.AuditEvent{}
	for _, e := range resp.GetEvents() {
		byTarget[e.GetTarget()] = e
		assert.Equal(t, audit.OutcomeDenied, e.GetOutcome())
		assert.Contains(t, e.GetError(), "UNAUTHENTICATED")
		assert.True(t, strings.HasPrefix(e.GetParams()["peer"], "127.0.0.1"), "peer %q is the REST client", e.GetParams()["peer"])
		raw, err := json.Marshal(e)
		require.NoError(t, err)
		assert.NotContains(t, string(raw), "wrong-secret")
	}
	anon := byTarget["REST GET /v1/status"]
	require.NotNil(t, anon, "events: %v", resp.GetEvents())
	assert.Equal(t, ActorAnonymous, anon.GetActor())
	assert.Contains(t, anon.GetError(), "missing bearer token")
	wrong := byTarget["REST GET /v1/topology"]
	require.NotNil(t, wrong)
	assert.Equal(t, "token-sha256:"+auth.Hash("wrong-secret")[:12], wrong.GetActor())
	assert.Contains(t, wrong.GetError(), "unknown token")

	// A known token is not audited by this interceptor.
	code, _ = a.get(t, "/v1/topology", viewerToken)
	require.NotEqual(t, http.StatusUnauthorized, code)
	out, err := audit.NewOutbox(a.st).List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, out, 2)
}

// TestUnauthenticatedFloodAggregated: with the clock stopped, a flood of
// anonymous calls from one address writes its first event at once and
// gathers the rest; when the window ends one event counts them, with the
// first and last time seen. The next window starts afresh.
func TestUnauthenticatedFloodAggregated(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	a := startAPI(t, apiOpts{docs: openStore(t, ""), now: clock.Now})
	for range 50 {
		code, _ := a.get(t, "/v1/status", "")
		require.Equal(t, http.StatusUnauthorized, code)
		clock.Add(time.Second)
	}
	out := audit.NewOutbox(a.st)
	evs, err := out.List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 1, "the first refusal")
	assert.Equal(t, "REST GET /v1/status", evs[0].Target)
	assert.Empty(t, evs[0].Params[ParamRepeated])
	assert.Equal(t, 1, a.ref.Pending())

	a.ref.Flush(t.Context())
	evs, err = out.List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 1, "the window has not ended: 50 s of 60")
	clock.Add(10 * time.Second)
	a.ref.Flush(t.Context())
	evs, err = out.List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	agg := evs[1]
	assert.Equal(t, ActionUnauthenticated, agg.Action)
	assert.Equal(t, ActorAnonymous, agg.Actor)
	assert.Equal(t, "49", agg.Params[ParamRepeated])
	assert.Equal(t, "2025-03-01T12:00:01Z", agg.Params[ParamFirstSeen])
	assert.Equal(t, "2025-03-01T12:00:49Z", agg.Params[ParamLastSeen])
	assert.Equal(t, 49.0, counterValue(t, a.reg, "drplane_coordinator_audit_refusals_aggregated_total"))
	assert.Zero(t, a.ref.Pending())

	code, _ := a.get(t, "/v1/status", "")
	require.Equal(t, http.StatusUnauthorized, code)
	evs, err = out.List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3, "a new window writes its first refusal at once")
}

// TestRefusalsBounded: refusals from more callers than MaxCallers, with the
// write bucket spent, cost at most the bucket's events plus one aggregate
// per tracked caller plus one for the rest, and every refusal is counted.
func TestRefusalsBounded(t *testing.T) {
	st := newEtcd(t)
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	r := NewRefusals(RefusalsOptions{Store: st, Source: "c1", MaxCallers: 10, Burst: 3, Rate: 0.001, Now: clock.Now, Logger: zerolog.Nop()})
	const callers, each = 40, 5
	for i := range callers {
		for range each {
			ev := audit.Event{Actor: ActorAnonymous, Action: ActionUnauthenticated, Target: "/x/y", Outcome: audit.OutcomeDenied,
				Params: map[string]string{"peer": "10.0.0." + strconv.Itoa(i) + ":1234"}}
			require.NoError(t, r.Put(t.Context(), ev))
		}
	}
	evs, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3, "the bucket's burst")
	clock.Add(DefaultRefusalWindow)
	r.Flush(t.Context())
	evs, err = audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3+10+1)
	total := 0
	for _, e := range evs {
		n := 1
		if e.Params[ParamRepeated] != "" {
			n, err = strconv.Atoi(e.Params[ParamRepeated])
			require.NoError(t, err)
		}
		total += n
	}
	assert.Equal(t, callers*each, total)
	last := evs[len(evs)-1]
	for _, e := range evs {
		if e.Action == ActionRefusedOverflow {
			last = e
		}
	}
	assert.Equal(t, ActorVarious, last.Actor)
	assert.Equal(t, strconv.Itoa((callers-10)*each), last.Params[ParamRepeated])

	// An event that is not a refusal is written as it is.
	require.NoError(t, r.Put(t.Context(), audit.Event{ID: "x", Time: clock.Now(), Actor: "token:a", Action: "a.b", Outcome: audit.OutcomeOK}))
	evs, err = audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3+10+1+1)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestUnauthenticatedStream: refused streaming calls are audited too.
func TestUnauthenticatedStream(t *testing.T) {
	st := newEtcd(t)
	u := NewUnauthenticated(UnauthenticatedOptions{Store: st, Source: "c1", Logger: zerolog.Nop()})
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer nope", "x-forwarded-for", strings.Repeat("6.6.6.6,", 1<<10)))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}})
	refused := apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "unknown token")
	err := u.Stream()(nil, streamWith{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/drplane.v1.ShardService/WatchRoutes"},
		func(any, grpc.ServerStream) error { return refused })
	require.ErrorIs(t, err, refused)
	evs, err := audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, "/drplane.v1.ShardService/WatchRoutes", evs[0].Target)
	assert.Equal(t, "token-sha256:"+auth.Hash("nope")[:12], evs[0].Actor)
	assert.Equal(t, "127.0.0.1:5", evs[0].Params["peer"], "x-forwarded-for from a gRPC caller is not believed")

	// Other errors are not this interceptor's business.
	err = u.Stream()(nil, streamWith{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/x/y"},
		func(any, grpc.ServerStream) error {
			return apierr.New(drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "no")
		})
	require.Error(t, err)
	evs, err = audit.NewOutbox(st).List(t.Context(), 0)
	require.NoError(t, err)
	assert.Len(t, evs, 1)
}

type streamWith struct {
	grpc.ServerStream
	ctx context.Context
}

func (s streamWith) Context() context.Context { return s.ctx }
