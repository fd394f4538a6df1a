package router_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/router/routertest"
)

// TestReconnectsAndCatchesUp breaks the stream (the coordinator ends it)
// and then stops the coordinator altogether; each time the table changes
// while the router cannot hear it, and the router catches up on reconnect.
func TestReconnectsAndCatchesUp(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	srv.Set(ordersTable(1))
	// The connection's own reconnect backoff starts at 1 s by default;
	// the coordinator's restart below should not wait for it.
	conn := srv.Dial(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
	}))
	r := startRouter(t, srv, router.Options{Conn: conn, Keyspaces: []string{"orders"}})
	waitReady(t, r.Router)
	require.Equal(t, int64(1), srv.Streams())

	// 1. The server ends the stream; the table changes meanwhile.
	srv.Break()
	srv.Set(ordersTable(2))
	waitRevision(t, r.Router, "orders", 2)
	check.For(t, waitFor, tick, func() error { return check.That(srv.Watchers() == 1, "srv.Watchers() == 1") })

	// 2. The server goes away; the table changes while it is down.
	srv.Stop()
	check.For(t, waitFor, tick, func() error {
		return check.That(metric(t, r.reg, "drplane_router_stream_up", nil) == 0, "metric(t, r.reg, \"drplane_router_stream_up\", nil) = %v, want 0", metric(t, r.reg, "drplane_router_stream_up", nil))
	})
	srv.Set(ordersTable(3))
	_, err := r.Route("orders", key42)
	require.NoError(t, err, "lookups answer from the last table while the stream is down")
	assert.Equal(t, int64(2), r.Revision("orders"))
	start := time.Now()
	srv.Restart()
	waitRevision(t, r.Router, "orders", 3)
	t.Logf("coordinator restart → router caught up in %s", time.Since(start))

	assert.GreaterOrEqual(t, srv.Streams(), int64(3))
	assert.GreaterOrEqual(t, metric(t, r.reg, "drplane_router_stream_reconnects_total", nil), float64(2))
	assert.Equal(t, float64(1), metric(t, r.reg, "drplane_router_stream_up", nil))
	assert.Equal(t, float64(3), metric(t, r.reg, "drplane_router_table_revision", map[string]string{"keyspace": "orders"}))
}

// TestMaxStale refuses local writes once the stream has been down longer
// than MaxStale by the injected clock, and takes them again once it is back.
func TestMaxStale(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	srv.Set(routertest.SetMaster(ordersTable(1), dcA1, "a1-db1", "127.0.0.1:1", 1))
	clock := newFakeClock()
	r := startRouter(t, srv, router.Options{
		Keyspaces: []string{"orders"},
		Now:       clock.Now,
		MaxStale:  time.Minute,
		DB:        func(m router.Master) (*sql.DB, error) { return sql.Open("mysql", "app:pw@tcp("+m.Addr+")/shop") },
	})
	waitReady(t, r.Router)
	ctx := context.Background()
	_, _, err := r.WriteDB(ctx, "orders", key42)
	require.NoError(t, err)

	srv.Stop()
	check.For(t, waitFor, tick, func() error {
		return check.That(metric(t, r.reg, "drplane_router_stream_up", nil) == 0, "metric(t, r.reg, \"drplane_router_stream_up\", nil) = %v, want 0", metric(t, r.reg, "drplane_router_stream_up", nil))
	})
	clock.Advance(59 * time.Second)
	_, _, err = r.WriteDB(ctx, "orders", key42)
	require.NoError(t, err, "down for less than MaxStale")
	clock.Advance(2 * time.Second)
	_, rt, err := r.WriteDB(ctx, "orders", key42)
	require.ErrorIs(t, err, router.ErrStale)
	assert.True(t, router.IsRetryable(err))
	assert.Equal(t, shard42, rt.Shard)
	_, err = r.Route("orders", key42)
	require.NoError(t, err, "Route still answers")

	srv.Restart()
	check.For(t, waitFor, 10*time.Millisecond, func() error {
		_, _, err := r.WriteDB(ctx, "orders", key42)
		return err
	})
}

// TestRunEndClosesHandles: when Run returns, the handles it opened are
// closed and WriteDB says so; a second Run is refused.
func TestRunEndClosesHandles(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	srv.Set(routertest.SetMaster(ordersTable(1), dcA1, "a1-db1", "127.0.0.1:1", 1))
	r, err := router.New(router.Options{
		Conn: srv.Dial(), DC: dcA1, Keyspaces: []string{"orders"},
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
		DB:     func(m router.Master) (*sql.DB, error) { return sql.Open("mysql", "app:pw@tcp("+m.Addr+")/shop") },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitReady(t, r)
	db, _, err := r.WriteDB(ctx, "orders", key42)
	require.NoError(t, err)

	require.ErrorIs(t, r.Run(ctx), router.ErrRunning)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	err = db.PingContext(context.Background())
	require.EqualError(t, err, "sql: database is closed")
	_, _, err = r.WriteDB(context.Background(), "orders", key42)
	require.ErrorIs(t, err, router.ErrClosed)
	_, err = r.Route("orders", key42)
	require.NoError(t, err, "Route answers from the last table after Run")
}

// TestTokenIsSent runs against a server that requires a bearer token: a
// connection without it never gets a table; one with it does.
func TestTokenIsSent(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{Token: "s3cret"})
	srv.Set(ordersTable(1))

	anon := startRouter(t, srv, router.Options{Keyspaces: []string{"orders"}})
	authed := startRouter(t, srv, router.Options{
		Conn:      srv.Dial(grpc.WithPerRPCCredentials(bearer("s3cret"))),
		Keyspaces: []string{"orders"},
	})
	waitReady(t, authed.Router)
	check.For(t, waitFor, tick, func() error {
		return check.That(metric(t, anon.reg, "drplane_router_stream_reconnects_total", nil) >= 2, "the unauthenticated router keeps retrying")
	})
	_, err := anon.Route("orders", key42)
	require.ErrorIs(t, err, router.ErrNotReady)
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
