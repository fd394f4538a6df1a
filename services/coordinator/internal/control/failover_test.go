package control_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
	"github.com/drplane/drplane/services/coordinator/internal/server"
)

// Tokens of the test API, one per role.
const (
	adminToken    = "admin-token"
	operatorToken = "operator-token"
	viewerToken   = "viewer-token"
	callTimeout   = 20 * time.Second
)

// failoverTopology has cluster "main" in dc-a1 (a1-db3 never promoted) and
// in dc-b1.
func failoverTopology() topology.Topology {
	return topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: "dc-a1", Instances: []topology.Instance{
				{Name: "a1-db1", Addr: "127.0.0.1:3306"}, {Name: "a1-db2", Addr: "127.0.0.1:3307"},
				{Name: "a1-db3", Addr: "127.0.0.1:3308", NoMaster: true},
			}},
			{Name: "main", DC: "dc-b1", Instances: []topology.Instance{{Name: "b1-db1", Addr: "127.0.0.1:4306"}}},
		},
	}
}

// api is a coordinator API server with FailoverService over a real etcd.
type api struct {
	st   *state.Store
	fo   drplanev1.FailoverServiceClient
	base string
}

func startAPI(t *testing.T) *api {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "")
	_, err := st.PutTopology(t.Context(), failoverTopology(), 0)
	require.NoError(t, err)
	authn, err := auth.New([]auth.Token{
		{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
		{Name: "ops-operator", Role: "operator", SHA256: auth.Hash(operatorToken)},
		{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
	}, server.Policy())
	require.NoError(t, err)
	// Kill switches are changed through the operations queue: run a leader
	// that applies it.
	l, err := leader.New(leader.Options{Store: st, ID: "coordinator-test", Logger: zerolog.Nop()})
	require.NoError(t, err)
	q := ops.New(ops.Options{Store: st, Leader: l, Logger: zerolog.Nop()})
	fo := control.NewFailover(control.FailoverOptions{Store: st, Queue: q, Source: "coordinator-test", Logger: zerolog.Nop()})
	srv := server.New(server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Auth: authn,
		Topology: &control.Topology{Store: st}, Failover: fo,
		PreAuth: []grpc.UnaryServerInterceptor{fo.AuditDenied(authn)}, Logger: zerolog.Nop(),
	})
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- srv.Run(ctx) }()
	go func() { done <- l.Run(ctx) }()
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(callTimeout):
				t.Error("server did not stop")
				return
			}
		}
	})
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &api{st: st, fo: drplanev1.NewFailoverServiceClient(conn), base: "http://" + srv.HTTPAddr()}
}

func as(t *testing.T, token string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// rest makes a REST call and returns the status code and body.
func (a *api) rest(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
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

// events returns the audit outbox events of one action.
func (a *api) events(t *testing.T, action string) []audit.Event {
	t.Helper()
	all, err := audit.NewOutbox(a.st).List(t.Context(), 0)
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

// requireAPIError checks err's gRPC code, catalog code and field.
func requireAPIError(t *testing.T, err error, grpcCode codes.Code, code drplanev1.ErrorCode, field string) *apierr.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, grpcCode, status.Code(err), "%v", err)
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, code, e.Code, "%v", err)
	assert.Equal(t, field, e.Field, "%v", err)
	return e
}

// agentFails makes the fake agent fail the switchover.
const agentFails = "replica a1-db2 did not catch up within 5s"

// runAgent plays the DC's HA agent: it takes up every PENDING switchover
// intent of dc, marks it RUNNING, writes a failover record and marks it
// DONE, or FAILED with failWith when that is not empty.
func runAgent(t *testing.T, st *state.Store, dc, failWith string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// Watch from the current revision on, so no intent created after this
	// returns can be missed.
	resp, err := st.Client().Get(ctx, st.Key("intents"))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range st.WatchSwitchovers(ctx, dc, resp.Header.Revision+1) {
			if ev.Deleted || ev.Value.State != state.SwitchoverPending {
				continue
			}
			if err := carryOut(ctx, st, ev.Value, ev.Rev, failWith); err != nil && ctx.Err() == nil {
				t.Errorf("fake agent: %v", err)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func carryOut(ctx context.Context, st *state.Store, in state.SwitchoverIntent, rev int64, failWith string) error {
	in.State = state.SwitchoverRunning
	rev, err := st.UpdateSwitchover(ctx, in, rev, nil)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	to := in.To
	if to == "" {
		to = "a1-db2"
	}
	rec := state.FailoverRecord{
		ID: state.NewRecordID(now, in.DC, in.Cluster), DC: in.DC, Cluster: in.Cluster, Kind: state.KindSwitchover,
		Trigger: "operator:" + in.RequestedBy, OldMaster: "a1-db1", NewMaster: to, Outcome: state.OutcomeSucceeded,
		Steps: []state.Step{
			{Name: "wait-catch-up", At: now, Took: state.Duration(20 * time.Millisecond)},
			{Name: "promote", At: now.Add(20 * time.Millisecond), Took: state.Duration(15 * time.Millisecond)},
		},
		DetectedAt: in.RequestedAt, StartedAt: now, WritableAt: now.Add(40 * time.Millisecond), FinishedAt: now.Add(50 * time.Millisecond),
		RTO: state.Duration(1500 * time.Millisecond), BlockWindow: state.Duration(35 * time.Millisecond),
		Agent: in.DC + "-haagent-1", FencingRevision: 7,
	}
	in.State = state.SwitchoverDone
	if failWith != "" {
		rec.NewMaster, rec.Outcome, rec.Error, rec.WritableAt, rec.RTO, rec.BlockWindow = "", state.OutcomeFailed, failWith, time.Time{}, 0, 0
		in.State, in.Error = state.SwitchoverFailed, failWith
	}
	if err := st.PutFailover(ctx, rec, nil); err != nil {
		return err
	}
	in.RecordID = rec.ID
	_, err = st.UpdateSwitchover(ctx, in, rev, nil)
	return err
}

func TestSwitchoverDone(t *testing.T) {
	a := startAPI(t)
	runAgent(t, a.st, "dc-a1", "")

	resp, err := a.fo.Switchover(as(t, operatorToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", To: "a1-db2", TimeoutSeconds: 10})
	require.NoError(t, err)
	in := resp.GetIntent()
	assert.Equal(t, drplanev1.SwitchoverState_SWITCHOVER_STATE_DONE, in.GetState())
	assert.Equal(t, "ops-operator", in.GetRequestedBy(), "requested_by is the caller's token name")
	assert.Equal(t, "a1-db2", in.GetTo())
	assert.True(t, strings.HasPrefix(in.GetId(), "so-"), in.GetId())
	rec := resp.GetRecord()
	require.NotNil(t, rec, "the record the intent names comes back")
	assert.Equal(t, in.GetRecordId(), rec.GetId())
	assert.Equal(t, "a1-db1", rec.GetOldMaster())
	assert.Equal(t, "a1-db2", rec.GetNewMaster())
	assert.Equal(t, drplanev1.FailoverKind_FAILOVER_KIND_SWITCHOVER, rec.GetKind())
	assert.Equal(t, drplanev1.FailoverOutcome_FAILOVER_OUTCOME_SUCCEEDED, rec.GetOutcome())
	assert.Equal(t, 1500*time.Millisecond, rec.GetRto().AsDuration())
	assert.Equal(t, 35*time.Millisecond, rec.GetBlockWindow().AsDuration())
	require.Len(t, rec.GetSteps(), 2)
	assert.Equal(t, "promote", rec.GetSteps()[1].GetName())
	assert.Equal(t, "operator:ops-operator", rec.GetTrigger())

	// The intent in etcd is the one the agent finished.
	stored, _, err := a.st.Switchover(t.Context(), "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, in.GetId(), stored.ID)
	assert.Equal(t, state.SwitchoverDone, stored.State)

	evs := a.events(t, control.ActionSwitchover)
	require.Len(t, evs, 1)
	ev := evs[0]
	assert.Equal(t, "token:ops-operator", ev.Actor)
	assert.Equal(t, "dc-a1/main", ev.Target)
	assert.Equal(t, audit.OutcomeOK, ev.Outcome)
	assert.Equal(t, in.GetId(), ev.Params[control.MetaIntentID])
	assert.Equal(t, "a1-db2", ev.Params["to"])
	assert.Equal(t, int64(1500), ev.RTOMillis)

	// The cluster is free again: a second switchover over REST, the agent
	// picking the target.
	code, body := a.rest(t, http.MethodPost, "/v1/clusters/dc-a1/main:switchover", operatorToken, `{"timeout_seconds": 10}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	var rr struct {
		Intent struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"intent"`
		Record struct {
			NewMaster   string `json:"new_master"`
			RTO         string `json:"rto"`
			BlockWindow string `json:"block_window"`
		} `json:"record"`
	}
	require.NoError(t, json.Unmarshal(body, &rr), "body: %s", body)
	assert.Equal(t, "SWITCHOVER_STATE_DONE", rr.Intent.State)
	assert.NotEqual(t, in.GetId(), rr.Intent.ID)
	assert.Equal(t, "a1-db2", rr.Record.NewMaster)
	assert.Equal(t, "1.500s", rr.Record.RTO)
	assert.Equal(t, "0.035s", rr.Record.BlockWindow)

	// Both records are listed, newest first.
	list, err := a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{Dc: "dc-a1"})
	require.NoError(t, err)
	require.Len(t, list.GetRecords(), 2)
	assert.Equal(t, rec.GetId(), list.GetRecords()[1].GetId())
	assert.True(t, list.GetRecords()[0].GetStartedAt().AsTime().After(list.GetRecords()[1].GetStartedAt().AsTime()))
	assert.Len(t, a.events(t, control.ActionSwitchover), 2)
}

func TestSwitchoverFailed(t *testing.T) {
	a := startAPI(t)
	runAgent(t, a.st, "dc-a1", agentFails)

	_, err := a.fo.Switchover(as(t, operatorToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", TimeoutSeconds: 10})
	e := requireAPIError(t, err, codes.FailedPrecondition, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "")
	assert.Contains(t, e.Message, agentFails)
	intentID := e.Metadata[control.MetaIntentID]
	require.NotEmpty(t, intentID)
	assert.NotEmpty(t, e.Metadata[control.MetaRecordID])

	// The failed record is in the history.
	list, err := a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{Dc: "dc-a1", Cluster: "main"})
	require.NoError(t, err)
	require.Len(t, list.GetRecords(), 1)
	assert.Equal(t, drplanev1.FailoverOutcome_FAILOVER_OUTCOME_FAILED, list.GetRecords()[0].GetOutcome())
	assert.Equal(t, e.Metadata[control.MetaRecordID], list.GetRecords()[0].GetId())
	assert.Nil(t, list.GetRecords()[0].GetWritableAt(), "never writable")

	evs := a.events(t, control.ActionSwitchover)
	require.Len(t, evs, 1)
	assert.Equal(t, audit.OutcomeFailed, evs[0].Outcome)
	assert.Contains(t, evs[0].Error, agentFails)
	assert.Equal(t, intentID, evs[0].Params[control.MetaIntentID])
}

func TestSwitchoverConflictAndTimeout(t *testing.T) {
	a := startAPI(t)
	// No agent runs: the intent stays PENDING until the call gives up.
	start := time.Now()
	_, err := a.fo.Switchover(as(t, operatorToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", TimeoutSeconds: 1})
	e := requireAPIError(t, err, codes.DeadlineExceeded, drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "")
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "waits the whole timeout")
	assert.Contains(t, e.Message, "no HA agent took it up")
	intentID := e.Metadata[control.MetaIntentID]
	require.NotEmpty(t, intentID)
	assert.Equal(t, string(state.SwitchoverPending), e.Metadata[control.MetaState])

	stored, _, err := a.st.Switchover(t.Context(), "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, intentID, stored.ID, "the intent stays for an agent to take up")
	assert.Equal(t, state.SwitchoverPending, stored.State)

	// A second request while it is unfinished conflicts, over gRPC and REST.
	_, err = a.fo.Switchover(as(t, adminToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", To: "a1-db2"})
	e = requireAPIError(t, err, codes.AlreadyExists, drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "")
	assert.Equal(t, intentID, e.Metadata[control.MetaIntentID])
	assert.Contains(t, e.Message, "requested by ops-operator")
	code, body := a.rest(t, http.MethodPost, "/v1/clusters/dc-a1/main:switchover", operatorToken, `{}`)
	assert.Equal(t, http.StatusConflict, code, "body: %s", body)
	assert.Contains(t, string(body), `"reason":"ALREADY_EXISTS"`)

	// Another cluster is not blocked by it: dc-b1 has no agent either, so
	// it times out too (the conflict is per cluster).
	_, err = a.fo.Switchover(as(t, operatorToken), &drplanev1.SwitchoverRequest{Dc: "dc-b1", Cluster: "main", TimeoutSeconds: 1})
	requireAPIError(t, err, codes.DeadlineExceeded, drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "")

	evs := a.events(t, control.ActionSwitchover)
	require.Len(t, evs, 4)
	for _, ev := range evs {
		assert.Equal(t, audit.OutcomeFailed, ev.Outcome)
	}
	assert.Equal(t, "token:ops-admin", evs[1].Actor)
	assert.Contains(t, evs[1].Error, "ALREADY_EXISTS")
}

func TestSwitchoverBadRequests(t *testing.T) {
	a := startAPI(t)
	tests := []struct {
		name  string
		req   *drplanev1.SwitchoverRequest
		grpc  codes.Code
		code  drplanev1.ErrorCode
		field string
		msg   string
	}{
		{"unknown dc", &drplanev1.SwitchoverRequest{Dc: "dc-zz", Cluster: "main"},
			codes.NotFound, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "dc", `dc "dc-zz" not found`},
		{"unknown cluster", &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "nope"},
			codes.NotFound, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "cluster", `cluster "dc-a1/nope" not found`},
		{"target of another cluster", &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", To: "b1-db1"},
			codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "to", `"b1-db1" is not part of cluster dc-a1/main`},
		{"target never promoted", &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", To: "a1-db3"},
			codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "to", "no_master"},
		{"timeout too long", &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", TimeoutSeconds: 301},
			codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "timeout_seconds", "between 1 and 300"},
		{"no dc", &drplanev1.SwitchoverRequest{Cluster: "main"},
			codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "dc", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.fo.Switchover(as(t, operatorToken), tt.req)
			e := requireAPIError(t, err, tt.grpc, tt.code, tt.field)
			assert.Contains(t, e.Message, tt.msg)
		})
	}
	_, _, err := a.st.Switchover(t.Context(), "dc-a1", "main")
	require.ErrorIs(t, err, state.ErrNotFound, "no bad request created an intent")
	assert.Len(t, a.events(t, control.ActionSwitchover), len(tests), "refused requests are audited too")

	// REST: the unknown cluster in the path is a 404 naming the field.
	code, body := a.rest(t, http.MethodPost, "/v1/clusters/dc-a1/nope:switchover", operatorToken, `{}`)
	assert.Equal(t, http.StatusNotFound, code, "body: %s", body)
	assert.Contains(t, string(body), `"field":"cluster"`)
}

func TestFailoverRoles(t *testing.T) {
	a := startAPI(t)

	_, err := a.fo.Switchover(as(t, viewerToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main"})
	requireAPIError(t, err, codes.PermissionDenied, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
	_, err = a.fo.SetKillSwitch(as(t, operatorToken), &drplanev1.SetKillSwitchRequest{Reason: "maintenance"})
	requireAPIError(t, err, codes.PermissionDenied, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
	code, body := a.rest(t, http.MethodPost, "/v1/killswitches:clear", operatorToken, `{"dc": "dc-a1"}`)
	assert.Equal(t, http.StatusForbidden, code, "body: %s", body)
	// Without a token nothing is audited.
	_, err = a.fo.SetKillSwitch(as(t, ""), &drplanev1.SetKillSwitchRequest{Reason: "x"})
	requireAPIError(t, err, codes.Unauthenticated, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "")

	// Nothing changed.
	_, _, err = a.st.Switchover(t.Context(), "dc-a1", "main")
	require.ErrorIs(t, err, state.ErrNotFound)
	sws, err := a.st.KillSwitches(t.Context())
	require.NoError(t, err)
	assert.Empty(t, sws)

	// Every refusal of a known caller is audited as DENIED.
	so := a.events(t, control.ActionSwitchover)
	require.Len(t, so, 1)
	assert.Equal(t, audit.OutcomeDenied, so[0].Outcome)
	assert.Equal(t, "token:dashboard", so[0].Actor)
	assert.Equal(t, "dc-a1/main", so[0].Target)
	assert.Contains(t, so[0].Error, "needs role operator")
	set := a.events(t, control.ActionKillSwitchSet)
	require.Len(t, set, 1)
	assert.Equal(t, audit.OutcomeDenied, set[0].Outcome)
	assert.Equal(t, "token:ops-operator", set[0].Actor)
	assert.Equal(t, "global", set[0].Target)
	assert.Equal(t, "maintenance", set[0].Params["reason"])
	clr := a.events(t, control.ActionKillSwitchClear)
	require.Len(t, clr, 1)
	assert.Equal(t, audit.OutcomeDenied, clr[0].Outcome)
	assert.Equal(t, "dc/dc-a1", clr[0].Target)

	// Viewers read.
	_, err = a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{})
	require.NoError(t, err)
	_, err = a.fo.ListKillSwitches(as(t, viewerToken), &drplanev1.ListKillSwitchesRequest{})
	require.NoError(t, err)
}

func TestKillSwitches(t *testing.T) {
	a := startAPI(t)
	ctx := as(t, adminToken)

	set := func(dc, cluster, reason string) *drplanev1.KillSwitch {
		t.Helper()
		resp, err := a.fo.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Dc: dc, Cluster: cluster, Reason: reason})
		require.NoError(t, err)
		return resp.GetKillSwitch()
	}
	ks := set("dc-a1", "main", "replacing a1-db1's disk")
	assert.Equal(t, "cluster/dc-a1/main", ks.GetScope())
	assert.Equal(t, "dc-a1", ks.GetDc())
	assert.Equal(t, "main", ks.GetCluster())
	assert.Equal(t, "ops-admin", ks.GetSetBy())
	assert.NotNil(t, ks.GetSetAt())
	set("dc-b1", "", "network work")

	// Over REST: the global switch, with proto field names.
	code, body := a.rest(t, http.MethodPost, "/v1/killswitches", adminToken, `{"reason": "game day"}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"scope":"global"`)

	// The agents' view: state.Blocked sees them.
	sws, err := a.st.KillSwitches(t.Context())
	require.NoError(t, err)
	blocked, ok := state.Blocked(sws, "dc-a1", "main")
	require.True(t, ok)
	assert.Equal(t, "global", blocked.Scope)

	list, err := a.fo.ListKillSwitches(as(t, viewerToken), &drplanev1.ListKillSwitchesRequest{})
	require.NoError(t, err)
	var scopes []string
	for _, k := range list.GetKillSwitches() {
		scopes = append(scopes, k.GetScope())
	}
	assert.Equal(t, []string{"global", "cluster/dc-a1/main", "dc/dc-b1"}, scopes, "global first, then by scope")

	// Clear: the switch comes back, then clearing again is a no-op.
	resp, err := a.fo.ClearKillSwitch(ctx, &drplanev1.ClearKillSwitchRequest{})
	require.NoError(t, err)
	assert.True(t, resp.GetCleared())
	assert.Equal(t, "game day", resp.GetKillSwitch().GetReason())
	code, body = a.rest(t, http.MethodPost, "/v1/killswitches:clear", adminToken, `{}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.Contains(t, string(body), `"cleared":false`)
	code, body = a.rest(t, http.MethodGet, "/v1/killswitches", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.NotContains(t, string(body), `"global"`)
	assert.Contains(t, string(body), `"dc/dc-b1"`)

	bad := []struct {
		name  string
		call  func() error
		grpc  codes.Code
		field string
	}{
		{"set without reason", func() error {
			_, err := a.fo.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Dc: "dc-a1", Reason: "  "})
			return err
		}, codes.InvalidArgument, "reason"},
		{"set unknown dc", func() error {
			_, err := a.fo.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Dc: "dc-zz", Reason: "x"})
			return err
		}, codes.NotFound, "dc"},
		{"set unknown cluster", func() error {
			_, err := a.fo.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Dc: "dc-a1", Cluster: "nope", Reason: "x"})
			return err
		}, codes.NotFound, "cluster"},
		{"set cluster without dc", func() error {
			_, err := a.fo.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Cluster: "main", Reason: "x"})
			return err
		}, codes.InvalidArgument, "dc"},
		{"clear unknown dc", func() error {
			_, err := a.fo.ClearKillSwitch(ctx, &drplanev1.ClearKillSwitchRequest{Dc: "dc-zz"})
			return err
		}, codes.NotFound, "dc"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Equal(t, tt.grpc, status.Code(err), "%v", err)
			e, _ := apierr.FromError(err)
			assert.Equal(t, tt.field, e.Field)
		})
	}

	// Audit: every call is there, the three sets and the four refused ones.
	sets := a.events(t, control.ActionKillSwitchSet)
	require.Len(t, sets, 3+4)
	assert.Equal(t, audit.OutcomeOK, sets[0].Outcome)
	assert.Equal(t, "cluster/dc-a1/main", sets[0].Target)
	assert.Equal(t, "token:ops-admin", sets[0].Actor)
	assert.Equal(t, "replacing a1-db1's disk", sets[0].Params["reason"])
	assert.Equal(t, audit.OutcomeFailed, sets[3].Outcome)
	clears := a.events(t, control.ActionKillSwitchClear)
	require.Len(t, clears, 3)
	assert.Equal(t, "true", clears[0].Params["cleared"])
	assert.Equal(t, "false", clears[1].Params["cleared"])
	assert.Equal(t, audit.OutcomeFailed, clears[2].Outcome)
}

func TestListFailovers(t *testing.T) {
	a := startAPI(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	put := func(dc string, minute int, kind state.FailoverKind, analysis string) string {
		t.Helper()
		at := base.Add(time.Duration(minute) * time.Minute)
		rec := state.FailoverRecord{
			ID: state.NewRecordID(at, dc, "main"), DC: dc, Cluster: "main", Kind: kind, Trigger: "analysis", Analysis: analysis,
			OldMaster: "x1", NewMaster: "x2", Outcome: state.OutcomeSucceeded, DetectedAt: at, StartedAt: at,
			RTO: state.Duration(2 * time.Second), RPOTransactions: -1,
		}
		require.NoError(t, a.st.PutFailover(t.Context(), rec, nil))
		return rec.ID
	}
	a1old := put("dc-a1", 1, state.KindFailover, "DeadMaster")
	b1 := put("dc-b1", 2, state.KindFailover, "DeadMaster")
	a1new := put("dc-a1", 3, state.KindSwitchover, "")

	ids := func(req *drplanev1.ListFailoversRequest) []string {
		t.Helper()
		resp, err := a.fo.ListFailovers(as(t, viewerToken), req)
		require.NoError(t, err)
		var out []string
		for _, r := range resp.GetRecords() {
			out = append(out, r.GetId())
		}
		return out
	}
	assert.Equal(t, []string{a1new, b1, a1old}, ids(&drplanev1.ListFailoversRequest{}), "newest first")
	assert.Equal(t, []string{a1new, a1old}, ids(&drplanev1.ListFailoversRequest{Dc: "dc-a1"}))
	assert.Equal(t, []string{a1new, b1}, ids(&drplanev1.ListFailoversRequest{Cluster: "main", Limit: 2}), "cluster in every DC")
	assert.Equal(t, []string{b1}, ids(&drplanev1.ListFailoversRequest{Dc: "dc-b1", Cluster: "main"}))

	_, err := a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{Dc: "dc-zz"})
	requireAPIError(t, err, codes.NotFound, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "dc")
	_, err = a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{Cluster: "nope"})
	requireAPIError(t, err, codes.NotFound, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "cluster")
	_, err = a.fo.ListFailovers(as(t, viewerToken), &drplanev1.ListFailoversRequest{Limit: -1})
	requireAPIError(t, err, codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "limit")

	code, body := a.rest(t, http.MethodGet, "/v1/failovers?dc=dc-b1&limit=5", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	var rr struct {
		Records []struct {
			ID              string `json:"id"`
			Kind            string `json:"kind"`
			Analysis        string `json:"analysis"`
			RTO             string `json:"rto"`
			RPOTransactions string `json:"rpo_transactions"`
		} `json:"records"`
	}
	require.NoError(t, json.Unmarshal(body, &rr), "body: %s", body)
	require.Len(t, rr.Records, 1)
	assert.Equal(t, b1, rr.Records[0].ID)
	assert.Equal(t, "FAILOVER_KIND_FAILOVER", rr.Records[0].Kind)
	assert.Equal(t, "DeadMaster", rr.Records[0].Analysis)
	assert.Equal(t, "2s", rr.Records[0].RTO)
	assert.Equal(t, "-1", rr.Records[0].RPOTransactions, "int64 is a JSON string")
}
