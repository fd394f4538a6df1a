package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

func divergenceClient(t *testing.T, c *coord) drplanev1.DivergenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(c.node.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return drplanev1.NewDivergenceServiceClient(conn)
}

// recordDivergence stores an OPEN entry of dc-a1's request rid for
// orders/shard, as a returning DC's reship does, with its change.
func recordDivergence(t *testing.T, st *state.Store, rid string, shard int32, kind string) string {
	t.Helper()
	ch, err := proto.Marshal(&drplanev1.ChangeEvent{OriginDc: "dc-a1", RequestId: rid, Keyspace: "orders", Shard: shard,
		Schema: "shop", Table: "orders", Rows: []*drplanev1.RowChange{{Op: drplanev1.RowOp_ROW_OP_INSERT}}})
	require.NoError(t, err)
	e := divergence.Entry{Origin: "dc-a1", RequestID: rid, GTID: "1-101-9", Keyspace: "orders", Shard: shard, Kind: kind,
		Owner: "dc-a2", DetectedBy: "reship@dc-a1", DetectedAt: time.Now().UTC(), Rows: 1, Change: ch}
	created, err := divergence.Record(context.Background(), st, e)
	require.NoError(t, err)
	require.True(t, created)
	return e.ID()
}

func apiCode(t *testing.T, err error) (drplanev1.ErrorCode, string) {
	t.Helper()
	require.Error(t, err)
	ae, ok := apierr.FromError(err)
	require.True(t, ok, "not an API error: %v", err)
	return ae.Code, ae.Field
}

// TestResolveDivergenceThroughTheAPI resolves entries on a follower
// coordinator, as drctl divergence resolve does: a viewer is refused, bad
// requests get typed errors naming the field, a discard goes through the
// leader's queue once (DISCARDED, the operator and the reason on the entry
// and in the audit log), resolving it again is FAILED_PRECONDITION, and
// REST takes the same call.
func TestResolveDivergenceThroughTheAPI(t *testing.T) {
	st, cs := startCoords(t, 2)
	_, rest := leaderOf(t, cs)
	c := divergenceClient(t, rest[0])
	fenced := recordDivergence(t, st, "1-101-9/7", 7, "")
	lost := recordDivergence(t, st, "1-101-10/8", 8, divergence.KindDiscarded)

	_, err := c.ResolveDivergence(as(t, viewerToken), &drplanev1.ResolveDivergenceRequest{Id: fenced, Action: "discard", Reason: "x"})
	code, _ := apiCode(t, err)
	require.Equal(t, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, code, "a viewer may not resolve: %v", err)

	for _, tc := range []struct {
		req   *drplanev1.ResolveDivergenceRequest
		code  drplanev1.ErrorCode
		field string
	}{
		{&drplanev1.ResolveDivergenceRequest{Action: "discard", Reason: "r"}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "id"},
		{&drplanev1.ResolveDivergenceRequest{Id: "no-colon", Action: "discard", Reason: "r"}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "id"},
		{&drplanev1.ResolveDivergenceRequest{Id: fenced, Action: "forget", Reason: "r"}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "action"},
		{&drplanev1.ResolveDivergenceRequest{Id: fenced, Reason: "r"}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "action"},
		{&drplanev1.ResolveDivergenceRequest{Id: fenced, Action: "discard", Reason: "  "}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "reason"},
		{&drplanev1.ResolveDivergenceRequest{Id: "dc-a1:9-9-9/1", Action: "discard", Reason: "r"}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "id"},
	} {
		_, err := c.ResolveDivergence(as(t, operatorToken), tc.req)
		code, field := apiCode(t, err)
		assert.Equal(t, tc.code, code, "%v: %v", tc.req, err)
		assert.Equal(t, tc.field, field, "%v: %v", tc.req, err)
	}
	got, err := c.GetDivergence(as(t, viewerToken), &drplanev1.GetDivergenceRequest{Id: fenced})
	require.NoError(t, err)
	require.Equal(t, drplanev1.DivergenceState_DIVERGENCE_STATE_OPEN, got.GetEntry().GetState(), "refused calls change nothing")
	require.Nil(t, got.GetEntry().GetResolution())

	resp, err := c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: fenced, Action: "discard",
		Reason: "the new owner's rows are newer"})
	require.NoError(t, err)
	assert.Equal(t, drplanev1.DivergenceState_DIVERGENCE_STATE_DISCARDED, resp.GetEntry().GetState())
	r := resp.GetEntry().GetResolution()
	require.NotNil(t, r)
	assert.Equal(t, "discard", r.GetAction())
	assert.Equal(t, "oncall", r.GetResolvedBy())
	assert.Equal(t, "the new owner's rows are newer", r.GetReason())
	assert.Equal(t, resp.GetOperationId(), r.GetOperationId())
	stored, err := divergence.Get(context.Background(), st, fenced)
	require.NoError(t, err)
	assert.Equal(t, divergence.Discarded, stored.State)
	assert.NotEmpty(t, stored.Change, "the change stays with the entry")

	_, err = c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: fenced, Action: "discard", Reason: "again"})
	code, _ = apiCode(t, err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, code, "resolved already: %v", err)

	list, err := c.ListDivergence(as(t, viewerToken), &drplanev1.ListDivergenceRequest{})
	require.NoError(t, err)
	states := map[string]string{}
	for _, e := range list.GetEntries() {
		states[e.GetId()] = e.GetState().String() + " " + e.GetResolution().GetResolvedBy()
	}
	assert.Equal(t, map[string]string{fenced: "DIVERGENCE_STATE_DISCARDED oncall", lost: "DIVERGENCE_STATE_OPEN "}, states)

	t.Log("REST: POST /v1/divergence:resolve")
	body := `{"id":"` + lost + `","action":"discard","reason":"lost by the failover; the others keep it"}`
	status, out := rest[0].rest(t, http.MethodPost, "/v1/divergence:resolve", viewerToken, body)
	assert.Equal(t, http.StatusForbidden, status, "%s", out)
	status, out = rest[0].rest(t, http.MethodPost, "/v1/divergence:resolve", operatorToken, body)
	require.Equal(t, http.StatusOK, status, "%s", out)
	var rj struct {
		Entry struct {
			State      string `json:"state"`
			Resolution struct {
				ResolvedBy string `json:"resolved_by"`
			} `json:"resolution"`
		} `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(out, &rj))
	assert.Equal(t, "DIVERGENCE_STATE_DISCARDED", rj.Entry.State)
	assert.Equal(t, "oncall", rj.Entry.Resolution.ResolvedBy)
	status, out = rest[0].rest(t, http.MethodPost, "/v1/divergence:resolve", operatorToken, body)
	assert.Equal(t, http.StatusBadRequest, status, "resolved already: %s", out)

	t.Log("audited: who, which entry, the action and the reason")
	outcomes := map[string]int{}
	var applied []audit.Event
	for _, e := range events(t, st, ops.ActionDivergenceResolve) {
		outcomes[e.Outcome]++
		if e.Outcome == audit.OutcomeOK {
			applied = append(applied, e)
		}
	}
	// The viewer's second refusal (REST) falls in the refusal window of the
	// first: written once, its repeat counted on it.
	assert.Equal(t, map[string]int{audit.OutcomeDenied: 1, audit.OutcomeFailed: 8, audit.OutcomeOK: 2}, outcomes)
	require.Len(t, applied, 2)
	ev := applied[0]
	if ev.Target != fenced {
		ev = applied[1]
	}
	assert.Equal(t, "token:oncall", ev.Actor)
	assert.Equal(t, fenced, ev.Target)
	assert.Equal(t, "discard", ev.Params["action"])
	assert.Equal(t, "the new owner's rows are newer", ev.Params["reason"])
	assert.Equal(t, divergence.Discarded, ev.Params["state"])
	assert.Equal(t, resp.GetOperationId(), ev.Params[ops.MetaOperationID])
}

// TestResolveDivergenceOnce: many operators discard the same entry at once
// on both coordinators; the leader applies exactly one, the others are
// FAILED_PRECONDITION (refused up front or by the leader), and exactly one
// resolution is audited as applied.
func TestResolveDivergenceOnce(t *testing.T) {
	st, cs := startCoords(t, 2)
	leaderOf(t, cs)
	id := recordDivergence(t, st, "1-101-11/9", 9, "")
	clients := []drplanev1.DivergenceServiceClient{divergenceClient(t, cs[0]), divergenceClient(t, cs[1])}
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ok   int
		errs []drplanev1.ErrorCode
	)
	for i := range n {
		wg.Go(func() {
			_, err := clients[i%2].ResolveDivergence(as(t, operatorToken),
				&drplanev1.ResolveDivergenceRequest{Id: id, Action: "discard", Reason: "race"})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
				return
			}
			ae, _ := apierr.FromError(err)
			errs = append(errs, ae.Code)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, ok, "exactly one resolution applied; errors %v", errs)
	for _, c := range errs {
		assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, c)
	}
	applied := 0
	for _, e := range events(t, st, ops.ActionDivergenceResolve) {
		if e.Outcome == audit.OutcomeOK {
			applied++
		}
	}
	assert.Equal(t, 1, applied)
}

// TestReapplyDivergence: a reapply goes REPLAYING with the shard's current
// owner as its target (the owner's collector carries it out); meanwhile the
// entry cannot be resolved again; once the collector reports CONFLICT it
// can; a reapply needs the kept change and an ACTIVE owner.
func TestReapplyDivergence(t *testing.T) {
	st, cs := startCoords(t, 2)
	_, rest := leaderOf(t, cs)
	c := divergenceClient(t, rest[0])
	id := recordDivergence(t, st, "1-101-20/7", 7, "")
	owner := loadMap(t, st, "orders").Shards[7].Owner

	resp, err := c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: id, Action: "reapply", Reason: "order lost"})
	require.NoError(t, err)
	assert.Equal(t, drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING, resp.GetEntry().GetState())
	assert.Equal(t, owner, resp.GetEntry().GetResolution().GetTargetDc())
	assert.Equal(t, "reapply", resp.GetEntry().GetResolution().GetAction())

	_, err = c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: id, Action: "discard", Reason: "changed my mind"})
	code, _ := apiCode(t, err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, code, "a reapply under way: %v", err)
	assert.Contains(t, err.Error(), "being reapplied at "+owner)

	t.Log("the owner's collector finds newer data: CONFLICT, resolvable again")
	e, rev, err := divergence.GetRev(context.Background(), st, id)
	require.NoError(t, err)
	e.State = divergence.Conflict
	e.Resolution.Detail, e.Resolution.FinishedAt = "row 1 (id=5): the row at the owner differs from the change's before image", time.Now().UTC()
	ok, err := divergence.Finish(context.Background(), st, e, rev, "collector@"+owner)
	require.NoError(t, err)
	require.True(t, ok)
	got, err := c.GetDivergence(as(t, viewerToken), &drplanev1.GetDivergenceRequest{Id: id})
	require.NoError(t, err)
	assert.Equal(t, drplanev1.DivergenceState_DIVERGENCE_STATE_CONFLICT, got.GetEntry().GetState())
	assert.Contains(t, got.GetEntry().GetResolution().GetDetail(), "differs")
	require.Len(t, events(t, st, divergence.ActionReplayConflict), 1)

	t.Log("the owner DOWN: a reapply would never be carried out")
	topo, trev, err := st.Topology(context.Background())
	require.NoError(t, err)
	for i := range topo.DCs {
		if topo.DCs[i].Name == owner {
			topo.DCs[i].State = topology.DCDown
		}
	}
	_, err = st.PutTopology(context.Background(), topo, trev)
	require.NoError(t, err)
	_, err = c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: id, Action: "reapply", Reason: "again"})
	code, _ = apiCode(t, err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, code, "%v", err)
	assert.Contains(t, err.Error(), "not ACTIVE")

	resp, err = c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: id, Action: "discard", Reason: "owner keeps its rows"})
	require.NoError(t, err)
	assert.Equal(t, drplanev1.DivergenceState_DIVERGENCE_STATE_DISCARDED, resp.GetEntry().GetState())
	assert.Equal(t, "discard", resp.GetEntry().GetResolution().GetAction())
	assert.Empty(t, resp.GetEntry().GetResolution().GetTargetDc())

	t.Log("no change kept: nothing to reapply")
	bare := divergence.Entry{Origin: "dc-a1", RequestID: "1-101-21/7", Keyspace: "orders", Shard: 7, Owner: "dc-a2",
		DetectedBy: "collector@dc-a2", DetectedAt: time.Now().UTC()}
	_, err = divergence.Record(context.Background(), st, bare)
	require.NoError(t, err)
	_, err = c.ResolveDivergence(as(t, operatorToken), &drplanev1.ResolveDivergenceRequest{Id: bare.ID(), Action: "reapply", Reason: "x"})
	code, _ = apiCode(t, err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, code, "%v", err)
}
