package coordinator_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/router"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// TestSDKWatchersSeeMapChanges: routers (the client SDK) connected to
// different coordinators all see a shard move and a freeze made through
// the API, and refuse writes accordingly.
func TestSDKWatchersSeeMapChanges(t *testing.T) {
	_, cs := startCoords(t, 2)
	leaderOf(t, cs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var rs []*router.Router
	for i := range 6 {
		c := cs[i%len(cs)]
		cli, err := apiclient.Dial(ctx, apiclient.Options{Addr: c.node.Server.GRPCAddr(), Token: viewerToken})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cli.Close() })
		r, err := router.New(router.Options{
			Conn: cli.Conn(), DC: "dc-a1", Keyspaces: []string{"orders"}, Logger: zerolog.Nop(),
			// The handle is never used here: opening one does not connect.
			DB: func(m router.Master) (*sql.DB, error) { return sql.Open("mysql", "app:pw@tcp("+m.Addr+")/shop") },
		})
		require.NoError(t, err)
		go func() { _ = r.Run(ctx) }()
		rs = append(rs, r)
	}
	for _, r := range rs {
		select {
		case <-r.Ready():
		case <-time.After(callTimeout):
			t.Fatal("router not ready")
		}
		rt, err := r.Route("orders", "42")
		require.NoError(t, err)
		require.Equal(t, 27, rt.Shard)
		require.Equal(t, "dc-a1", rt.Owner)
		_, _, err = r.WriteDB(ctx, "orders", "42")
		require.NoError(t, err, "dc-a1 owns shard 27")
	}

	begin := time.Now()
	_, err := cs[1].shards.MoveShard(as(t, adminToken), &drplanev1.MoveShardRequest{Force: true,
		Keyspace: "orders", Shard: 27, OwnerDc: "dc-b1", Reason: "sdk test"})
	require.NoError(t, err)
	for _, r := range rs {
		check.For(t, callTimeout, time.Millisecond, func() error {
			rt, err := r.Route("orders", "42")
			if err != nil {
				return err
			}
			return check.That(rt.Owner == "dc-b1", "rt.Owner = %v, want \"dc-b1\"", rt.Owner)
		})
		_, _, err := r.WriteDB(ctx, "orders", "42")
		var no *router.NotOwner
		require.True(t, errors.As(err, &no), "want NotOwner, got %v", err)
		assert.Equal(t, "dc-b1", no.Owner)
		assert.False(t, router.IsRetryable(err))
	}
	t.Logf("move seen by %d routers %s after the call started", len(rs), time.Since(begin))

	_, err = cs[0].shards.SetShardState(as(t, adminToken), &drplanev1.SetShardStateRequest{
		Keyspace: "orders", Shard: 27, State: drplanev1.ShardState_SHARD_STATE_FROZEN, Reason: "sdk test"})
	require.NoError(t, err)
	for _, r := range rs {
		check.For(t, callTimeout, time.Millisecond, func() error {
			_, _, err := r.WriteDB(ctx, "orders", "42")
			return check.That(errors.Is(err, router.ErrShardFrozen) && router.IsRetryable(err), "errors.Is(err, router.ErrShardFrozen) && router.IsRetryable(err)")
		})
	}
}
