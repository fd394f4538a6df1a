package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// floodCalls is how many calls each flooding caller makes.
const floodCalls = 300

// TestRefusedFloodBounded: a viewer calling Switchover over and over
// (PERMISSION_DENIED), and an anonymous caller over gRPC and REST
// (UNAUTHENTICATED), leave a handful of events in the etcd outbox, not one
// per call: once a caller's burst of refusals is spent it is answered
// RESOURCE_EXHAUSTED, and its refusals are gathered into one event per
// caller and action whose "repeated" counts them, written when the window
// ends (here: when the coordinator stops). Nothing is lost from the count.
func TestRefusedFloodBounded(t *testing.T) {
	st, cs := startCoords(t, 1)
	c := cs[0]
	conn, err := grpc.NewClient(c.node.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	failover := drplanev1.NewFailoverServiceClient(conn)
	topo := drplanev1.NewTopologyServiceClient(conn)
	before := outboxEvents(t, st)

	viewer := map[codes.Code]int{}
	anon := map[codes.Code]int{}
	rest := map[int]int{}
	for range floodCalls {
		_, err := failover.Switchover(as(t, viewerToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main", TimeoutSeconds: 1})
		viewer[status.Code(err)]++
		_, err = topo.GetStatus(as(t, ""), &drplanev1.GetStatusRequest{})
		anon[status.Code(err)]++
		code, _ := c.rest(t, http.MethodGet, "/v1/status", "", "")
		rest[code]++
	}
	t.Logf("viewer %v, anonymous gRPC %v, anonymous REST %v", viewer, anon, rest)
	assert.Equal(t, floodCalls, viewer[codes.PermissionDenied]+viewer[codes.ResourceExhausted], "viewer answers: %v", viewer)
	assert.Positive(t, viewer[codes.ResourceExhausted], "the viewer is throttled")
	assert.Equal(t, 2*floodCalls, anon[codes.Unauthenticated]+anon[codes.ResourceExhausted]+
		rest[http.StatusUnauthorized]+rest[http.StatusTooManyRequests], "anonymous answers: %v %v", anon, rest)
	assert.Positive(t, anon[codes.ResourceExhausted]+rest[http.StatusTooManyRequests], "the anonymous caller is throttled")

	during := outboxEvents(t, st)[len(before):]
	size := 0
	for _, e := range during {
		raw, err := json.Marshal(e)
		require.NoError(t, err)
		size += len(raw)
	}
	t.Logf("outbox during the flood: %d events, %d bytes", len(during), size)
	// At most the first event of each caller and action: the viewer's
	// switchover.request and api.throttled, the anonymous caller's
	// api.unauthenticated and api.throttled.
	assert.LessOrEqual(t, len(during), 4, "events: %v", during)
	assert.Less(t, size, 16<<10)

	c.stop()
	after := outboxEvents(t, st)[len(before):]
	assert.LessOrEqual(t, len(after), 8, "first events and one aggregate per caller and action: %v", after)
	refusedBy := map[string]int{}
	for _, e := range after {
		assert.Equal(t, audit.OutcomeDenied, e.Outcome)
		n := 1
		if r := e.Params["repeated"]; r != "" {
			n, err = strconv.Atoi(r)
			require.NoError(t, err)
			first, err := time.Parse(time.RFC3339Nano, e.Params["first_seen"])
			require.NoError(t, err)
			last, err := time.Parse(time.RFC3339Nano, e.Params["last_seen"])
			require.NoError(t, err)
			assert.False(t, last.Before(first), "first %s, last %s", first, last)
		}
		who := e.Actor
		if who != "token:dashboard" {
			who = "anonymous"
		}
		refusedBy[e.Action+" "+who] += n
	}
	assert.Equal(t, map[string]int{
		"switchover.request token:dashboard": viewer[codes.PermissionDenied],
		"api.throttled token:dashboard":      viewer[codes.ResourceExhausted],
		"api.unauthenticated anonymous":      anon[codes.Unauthenticated] + rest[http.StatusUnauthorized],
		"api.throttled anonymous":            anon[codes.ResourceExhausted] + rest[http.StatusTooManyRequests],
	}, refusedBy, "every refused call is counted once")
}

// TestWatchStreamsBoundedPerCaller: one token holds at most 16 open
// WatchRoutes streams; the next is refused RESOURCE_EXHAUSTED, and once
// one closes another opens.
func TestWatchStreamsBoundedPerCaller(t *testing.T) {
	_, cs := startCoords(t, 1)
	c := cs[0]
	open := func() (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(as(t, viewerToken))
		s, err := c.shards.WatchRoutes(ctx, &drplanev1.WatchRoutesRequest{Keyspaces: []string{"orders"}})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	var cancels []context.CancelFunc
	t.Cleanup(func() {
		for _, cancel := range cancels {
			cancel()
		}
	})
	for i := range 16 {
		cancel, err := open()
		require.NoError(t, err, "stream %d", i)
		cancels = append(cancels, cancel)
	}
	_, err := open()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "token:dashboard already holds 16 open watch streams")

	cancels[0]()
	cancels = cancels[1:]
	// The server notices the closed stream shortly after the client.
	check.For(t, callTimeout, 10*time.Millisecond, func() error {
		cancel, err := open()
		if err == nil {
			cancels = append(cancels, cancel)
		}
		return err
	})
}

func outboxEvents(t *testing.T, st *state.Store) []audit.Event {
	t.Helper()
	evs, err := audit.NewOutbox(st).List(context.Background(), 0)
	require.NoError(t, err)
	return evs
}
