package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/cityfail"
	"github.com/drplane/drplane/services/coordinator/internal/dclive"
)

func cityClient(t *testing.T, c *coord) drplanev1.CityFailoverServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(c.node.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return drplanev1.NewCityFailoverServiceClient(conn)
}

// leases stores the DC leases of dcs (their HA agents are alive).
func leases(t *testing.T, st *state.Store, dcs ...string) {
	t.Helper()
	for _, dc := range dcs {
		require.NoError(t, st.PutDCLease(context.Background(), state.DCLease{DC: dc, Agent: dc + "-agent", Since: time.Now().UTC()}, 0, nil))
	}
}

// setKeyspace changes one keyspace of the stored topology.
func setKeyspace(t *testing.T, st *state.Store, name string, fn func(*topology.Keyspace)) {
	t.Helper()
	ctx := context.Background()
	topo, rev, err := st.Topology(ctx)
	require.NoError(t, err)
	for i := range topo.Keyspaces {
		if topo.Keyspaces[i].Name == name {
			fn(&topo.Keyspaces[i])
		}
	}
	_, err = st.PutTopology(ctx, topo, rev)
	require.NoError(t, err)
}

func owned(t *testing.T, st *state.Store, keyspace, dc string) int {
	t.Helper()
	n := 0
	for _, s := range loadMap(t, st, keyspace).Shards {
		if s.Owner == dc {
			n++
		}
	}
	return n
}

// TestFailOverDCThroughTheAPI asks a follower coordinator to fail a DC
// over, as drctl failover dc does: typed errors naming the field, a DC
// whose lease is held refused, max_rpo holding a shard whose loss window
// is unknown until the loss is accepted (the same failover goes on), the
// failover listed and shown over gRPC and REST, and every call audited.
func TestFailOverDCThroughTheAPI(t *testing.T) {
	st, cs := startCoords(t, 2)
	_, rest := leaderOf(t, cs)
	c := cityClient(t, rest[0])
	leases(t, st, "dc-a2", "dc-b1")
	setKeyspace(t, st, "orders", func(ks *topology.Keyspace) { ks.MaxRPO = "1s" })

	_, err := c.FailOverDC(as(t, viewerToken), &drplanev1.FailOverDCRequest{Dc: "dc-a1", Reason: "x"})
	require.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED), "%v", err)
	for _, tc := range []struct {
		req   *drplanev1.FailOverDCRequest
		code  drplanev1.ErrorCode
		field string
	}{
		{&drplanev1.FailOverDCRequest{}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "dc"},
		{&drplanev1.FailOverDCRequest{Dc: "dc-x"}, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "dc"},
		{&drplanev1.FailOverDCRequest{Dc: "dc-a1", TimeoutSeconds: 301}, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "timeout_seconds"},
		{&drplanev1.FailOverDCRequest{Dc: "dc-b1"}, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "dc"},
	} {
		_, err := c.FailOverDC(as(t, adminToken), tc.req)
		require.Error(t, err, "%v", tc.req)
		ae, ok := apierr.FromError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, tc.code, ae.Code, "%v: %v", tc.req, err)
		assert.Equal(t, tc.field, ae.Field, "%v: %v", tc.req, err)
	}
	require.Positive(t, owned(t, st, "orders", "dc-a1"))

	t.Log("no loss accepted: orders (max_rpo 1s, loss window unknown) is held, users flipped")
	resp, err := c.FailOverDC(as(t, adminToken), &drplanev1.FailOverDCRequest{Dc: "dc-a1", Reason: "flooded"})
	require.NoError(t, err)
	f := resp.GetFailover()
	assert.Equal(t, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD, f.GetState())
	assert.Equal(t, "operator:ops-admin", f.GetTrigger())
	assert.Contains(t, f.GetHeld(), "max_rpo")
	assert.Positive(t, owned(t, st, "orders", "dc-a1"))
	assert.Zero(t, owned(t, st, "users", "dc-a1"))
	id := f.GetId()

	t.Log("the loss accepted: the same failover flips the rest")
	resp, err = c.FailOverDC(as(t, adminToken), &drplanev1.FailOverDCRequest{Dc: "dc-a1", AcceptLoss: true, Reason: "budget waived"})
	require.NoError(t, err)
	f = resp.GetFailover()
	assert.Equal(t, id, f.GetId())
	assert.Equal(t, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE, f.GetState())
	assert.True(t, f.GetAcceptLoss())
	assert.Equal(t, f.GetShardsTotal(), f.GetShardsFlipped())
	assert.Len(t, f.GetShards(), int(f.GetShardsTotal()))
	assert.Zero(t, owned(t, st, "orders", "dc-a1"))
	assert.EqualValues(t, -1, f.GetEstimate().GetMaxLagBoundMs(), "no replication statistics: the window is unknown")

	_, err = c.FailOverDC(as(t, adminToken), &drplanev1.FailOverDCRequest{Dc: "dc-a1", Reason: "again"})
	require.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION), "owns nothing now: %v", err)

	list, err := c.ListCityFailovers(as(t, viewerToken), &drplanev1.ListCityFailoversRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetFailovers(), 1)
	assert.Empty(t, list.GetFailovers()[0].GetShards(), "the list leaves the shards out")
	got, err := c.GetCityFailover(as(t, viewerToken), &drplanev1.GetCityFailoverRequest{Id: id})
	require.NoError(t, err)
	assert.Equal(t, f.GetShardsFlipped(), got.GetFailover().GetShardsFlipped())
	_, err = c.GetCityFailover(as(t, viewerToken), &drplanev1.GetCityFailoverRequest{Id: "nope"})
	require.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND), "%v", err)
	code, body := rest[0].rest(t, http.MethodGet, "/v1/cityfailovers/"+id, viewerToken, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var rj struct {
		Failover struct {
			State  string `json:"state"`
			Shards []struct {
				Flipped bool `json:"flipped"`
			} `json:"shards"`
		} `json:"failover"`
	}
	require.NoError(t, json.Unmarshal(body, &rj))
	assert.Equal(t, "CITY_FAILOVER_STATE_DONE", rj.Failover.State)
	assert.NotEmpty(t, rj.Failover.Shards)
	code, _ = rest[0].rest(t, http.MethodGet, "/v1/cityfailovers/nope", viewerToken, "")
	assert.Equal(t, http.StatusNotFound, code)

	requests := events(t, st, "city_failover.request")
	outcomes := map[string]int{}
	for _, e := range requests {
		outcomes[e.Outcome]++
	}
	assert.Equal(t, map[string]int{audit.OutcomeDenied: 1, audit.OutcomeFailed: 5, audit.OutcomeOK: 2}, outcomes)
	require.Len(t, events(t, st, cityfail.ActionHeld), 1)
	flips := events(t, st, cityfail.ActionFlip)
	require.Len(t, flips, 1)
	assert.Equal(t, "token:ops-admin", flips[0].Actor, "named as the API's own events name the caller")
	assert.Equal(t, "true", flips[0].Params["accept_loss"])
}

// TestLeaderFailsOverALostDC: the other DCs' views say dc-a1's masters do
// not answer and its lease is gone, so the leader declares it LOST and
// runs the city failover on its own; the global auto_city_failover (off
// for these coordinators) holds the keyspaces that do not turn it on, and
// the failover is visible through the API.
func TestLeaderFailsOverALostDC(t *testing.T) {
	st, cs := startCoords(t, 1)
	leaderOf(t, cs)
	t.Log("dc-a1 runs (its lease is seen), then goes dark")
	leases(t, st, "dc-a1")
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		s, _, err := state.Get[dclive.Status](context.Background(), st, dclive.StatusKey(st, "dc-a1"))
		if err != nil {
			return err
		}
		return check.That(s.Code == dclive.Alive, "dc-a1 is %s", s.Code)
	})
	_, err := st.Client().Delete(context.Background(), st.DCLeaseKey("dc-a1"))
	require.NoError(t, err)
	on := true
	setKeyspace(t, st, "users", func(ks *topology.Keyspace) { ks.AutoCityFailover = &on })
	leases(t, st, "dc-a2", "dc-b1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			for _, obs := range []string{"dc-a2", "dc-b1"} {
				_ = st.PutDCView(ctx, state.DCView{Observer: obs, Target: "dc-a1", MastersProbed: 1, ObservedAt: time.Now().UTC(), By: obs}, 0)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	c := cityClient(t, cs[0])
	var f *drplanev1.CityFailover
	check.For(t, 20*time.Second, 50*time.Millisecond, func() error {
		list, err := c.ListCityFailovers(as(t, viewerToken), &drplanev1.ListCityFailoversRequest{Dc: "dc-a1"})
		if err != nil {
			return err
		}
		if len(list.GetFailovers()) == 0 {
			return check.That(false, "no city failover yet")
		}
		f = list.GetFailovers()[0]
		return check.That(f.GetState() == drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD, "state %s", f.GetState())
	})
	assert.Equal(t, "automatic", f.GetTrigger())
	assert.Equal(t, "DCLost", f.GetVerdict())
	assert.Equal(t, []string{"dc-a2", "dc-b1"}, f.GetWitnesses())
	assert.Contains(t, f.GetHeld(), "auto_city_failover is off for keyspace orders")
	assert.Zero(t, owned(t, st, "users", "dc-a1"), "users turns auto_city_failover on")
	assert.Positive(t, owned(t, st, "orders", "dc-a1"))
	held := events(t, st, cityfail.ActionHeld)
	require.Len(t, held, 1)
	assert.Equal(t, "coordinator:coord-1", held[0].Actor)
	check.Hold(t, time.Second, 100*time.Millisecond, func() error {
		list, err := c.ListCityFailovers(as(t, viewerToken), &drplanev1.ListCityFailoversRequest{})
		if err != nil {
			return err
		}
		return check.That(len(list.GetFailovers()) == 1, "%d failovers: a held one is not repeated", len(list.GetFailovers()))
	})
}
