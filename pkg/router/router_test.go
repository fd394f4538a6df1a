package router_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the DB func of these tests opens mysql handles
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/router/routertest"
	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// In the default 64-shard HASH map the key "42" is in shard 27 (see
// pkg/shardmap); HashTable gives it to the DCs in turn, so dc-a1 owns it.
const (
	key42   = "42"
	shard42 = 27
)

func ordersTable(rev int64) *drplanev1.RoutingTable {
	return routertest.HashTable("orders", "main", 64, rev, dcA1, dcA2, dcB1)
}

func TestRouteFollowsTableChanges(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	tbl := ordersTable(10)
	routertest.SetMaster(tbl, dcA1, "a1-db1", "127.0.0.1:3301", 1)
	routertest.SetMaster(tbl, dcB1, "b1-db1", "127.0.0.1:3401", 1)
	srv.Set(tbl)

	r := startRouter(t, srv, router.Options{Keyspaces: []string{"orders"}})
	waitReady(t, r.Router)
	require.Equal(t, int64(10), r.Revision("orders"))

	rt, err := r.Route("orders", key42)
	require.NoError(t, err)
	assert.Equal(t, router.Route{
		Keyspace: "orders", Shard: shard42, Owner: dcA1, Backup: dcA2, State: shardmap.Active, Local: true,
		Master:   router.Master{DC: dcA1, Cluster: "main", Instance: "a1-db1", Addr: "127.0.0.1:3301", Term: 1},
		Revision: 10, MapRevision: 10,
	}, rt)

	// Move the shard to dc-b1: the router sees the new owner and its master.
	tbl.Shards[shard42].OwnerDc, tbl.Shards[shard42].BackupDc = dcB1, dcA1
	tbl.Shards[shard42].Revision, tbl.MapRevision = 11, 11
	srv.Set(tbl)
	waitRevision(t, r.Router, "orders", 11)
	rt, err = r.Route("orders", key42)
	require.NoError(t, err)
	assert.Equal(t, dcB1, rt.Owner)
	assert.False(t, rt.Local)
	assert.Equal(t, "127.0.0.1:3401", rt.Master.Addr)
	assert.Equal(t, int64(11), rt.Revision)

	// Propagation: from Set on the server to the new table in use.
	const changes = 100
	lat := make([]time.Duration, 0, changes)
	for i := range changes {
		rev := int64(12 + i)
		owner := []string{dcA1, dcB1}[i%2]
		tbl.Shards[shard42].OwnerDc = owner
		tbl.Shards[shard42].BackupDc = dcA2
		tbl.Shards[shard42].Revision, tbl.MapRevision = rev, rev
		start := time.Now()
		srv.Set(tbl)
		for r.Revision("orders") != rev {
			if time.Since(start) > waitFor {
				t.Fatalf("change %d not seen after %s", i, waitFor)
			}
			time.Sleep(20 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		rt, err := r.Route("orders", key42)
		require.NoError(t, err)
		require.Equal(t, owner, rt.Owner)
	}
	slices.Sort(lat)
	t.Logf("table change → router (real gRPC over loopback, %d changes): p50 %s, p99 %s, max %s",
		changes, lat[changes/2], lat[changes*99/100], lat[changes-1])
	assert.Equal(t, float64(12+changes-1), metric(t, r.reg, "drplane_router_table_revision", map[string]string{"keyspace": "orders"}))
	assert.GreaterOrEqual(t, metric(t, r.reg, "drplane_router_lookups_total", map[string]string{"call": "route", "outcome": "routed"}), float64(changes))
}

func TestWriteDBRules(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	tbl := ordersTable(5)
	routertest.SetMaster(tbl, dcA1, "a1-db1", "127.0.0.1:1", 3)
	routertest.SetMaster(tbl, dcA2, "a2-db1", "127.0.0.1:2", 4)
	srv.Set(tbl)
	var opened []router.Master
	r := startRouter(t, srv, router.Options{
		Keyspaces: []string{"orders"},
		DB: func(m router.Master) (*sql.DB, error) {
			opened = append(opened, m)
			return sql.Open("mysql", "app:pw@tcp("+m.Addr+")/shop")
		},
	})
	waitReady(t, r.Router)
	ctx := context.Background()

	// Shards 0, 3, ... are dc-a1's; 1, 4, ... dc-a2's; 2, 5, ... dc-b1's.
	keyOf := func(shard int) string {
		for i := range 100000 {
			k := strconv.Itoa(i)
			if rt, err := r.Route("orders", k); err == nil && rt.Shard == shard {
				return k
			}
		}
		t.Fatalf("no key found for shard %d", shard)
		return ""
	}

	t.Run("owner", func(t *testing.T) {
		db, rt, err := r.WriteDB(ctx, "orders", key42)
		require.NoError(t, err)
		require.NotNil(t, db)
		assert.Equal(t, shard42, rt.Shard)
		db2, _, err := r.WriteDB(ctx, "orders", keyOf(0))
		require.NoError(t, err)
		assert.Same(t, db, db2, "one handle per master endpoint")
		assert.Equal(t, []router.Master{{DC: dcA1, Cluster: "main", Instance: "a1-db1", Addr: "127.0.0.1:1", Term: 3}}, opened)
	})

	t.Run("not owner", func(t *testing.T) {
		_, rt, err := r.WriteDB(ctx, "orders", keyOf(1))
		var no *router.NotOwner
		require.ErrorAs(t, err, &no)
		assert.Equal(t, router.NotOwner{Keyspace: "orders", Shard: 1, DC: dcA1, Owner: dcA2,
			Master: router.Master{DC: dcA2, Cluster: "main", Instance: "a2-db1", Addr: "127.0.0.1:2", Term: 4}}, *no)
		assert.Equal(t, dcA2, rt.Owner)
		assert.False(t, router.IsRetryable(err), "the write belongs in another DC")
		assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, apierr.CodeOf(err))
		// On the wire it is NOT_OWNER naming the owner.
		e, ok := apierr.FromError(status.Convert(err).Err())
		require.True(t, ok)
		assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, e.Code)
		assert.Equal(t, map[string]string{"keyspace": "orders", "shard": "1", "owner_dc": dcA2}, e.Metadata)

		// No master known in the owner DC: still NotOwner, with an empty Master.
		_, _, err = r.WriteDB(ctx, "orders", keyOf(2))
		require.ErrorAs(t, err, &no)
		assert.Equal(t, dcB1, no.Owner)
		assert.False(t, no.Master.Known())
	})

	t.Run("frozen", func(t *testing.T) {
		tbl.Shards[0].State = drplanev1.ShardState_SHARD_STATE_FROZEN
		tbl.Shards[1].State = drplanev1.ShardState_SHARD_STATE_FROZEN
		tbl.Shards[3].State = drplanev1.ShardState_SHARD_STATE_MOVING
		tbl.MapRevision = 6
		srv.Set(tbl)
		waitRevision(t, r.Router, "orders", 6)
		for _, shard := range []int{0, 1} { // frozen here and frozen elsewhere
			_, rt, err := r.WriteDB(ctx, "orders", keyOf(shard))
			require.ErrorIs(t, err, router.ErrShardFrozen)
			assert.Equal(t, shardmap.Frozen, rt.State)
			assert.True(t, router.IsRetryable(err))
			assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN, apierr.CodeOf(err))
		}
		_, rt, err := r.WriteDB(ctx, "orders", keyOf(3))
		require.NoError(t, err, "a MOVING shard still takes writes at its owner")
		assert.Equal(t, shardmap.Moving, rt.State)
	})

	t.Run("no master", func(t *testing.T) {
		routertest.SetMaster(tbl, dcA1, "", "", 0)
		tbl.MapRevision = 7
		srv.Set(tbl)
		waitRevision(t, r.Router, "orders", 7)
		_, rt, err := r.WriteDB(ctx, "orders", key42)
		require.ErrorIs(t, err, router.ErrNoMaster)
		assert.True(t, rt.Local)
		assert.True(t, router.IsRetryable(err))
	})

	t.Run("lookup errors", func(t *testing.T) {
		_, _, err := r.WriteDB(ctx, "users", "1")
		require.ErrorIs(t, err, router.ErrUnknownKeyspace)
		assert.False(t, router.IsRetryable(err))
		_, err = r.Route("users", "1")
		require.ErrorIs(t, err, router.ErrUnknownKeyspace)
	})

	assert.Equal(t, float64(1), metric(t, r.reg, "drplane_router_lookups_total", map[string]string{"call": "write", "outcome": "no_master"}))
	assert.Equal(t, float64(2), metric(t, r.reg, "drplane_router_lookups_total", map[string]string{"call": "write", "outcome": "frozen"}))
}

func TestNotReadyAndRangeKeys(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	r := startRouter(t, srv, router.Options{Keyspaces: []string{"orders", "cities"}})

	_, err := r.Route("orders", key42)
	require.ErrorIs(t, err, router.ErrNotReady)
	assert.True(t, router.IsRetryable(err))
	_, _, err = r.WriteDB(context.Background(), "orders", key42)
	require.ErrorIs(t, err, router.ErrNotReady)

	// A RANGE keyspace of two shards: [0, 1000) and [1000, 2^64).
	cities := &drplanev1.RoutingTable{Keyspace: "cities", Function: "RANGE", Cluster: "geo", MapRevision: 3, Shards: []*drplanev1.Shard{
		{Id: 0, Lo: "0", Hi: "1000", OwnerDc: dcA1, BackupDc: dcB1, State: drplanev1.ShardState_SHARD_STATE_ACTIVE, Revision: 2},
		{Id: 1, Lo: "1000", Hi: "0", OwnerDc: dcB1, BackupDc: dcA1, State: drplanev1.ShardState_SHARD_STATE_ACTIVE, Revision: 3},
	}}
	srv.Set(ordersTable(1))
	waitRevision(t, r.Router, "orders", 1)
	select {
	case <-r.Ready():
		t.Fatal("ready with one of two keyspaces")
	default:
	}
	srv.Set(cities)
	waitReady(t, r.Router)

	for key, want := range map[string]int{"0": 0, "999": 0, "0999": 0, "1000": 1, "18446744073709551615": 1} {
		rt, err := r.Route("cities", key)
		require.NoError(t, err, key)
		assert.Equal(t, want, rt.Shard, key)
	}
	_, err = r.Route("cities", "x1")
	require.ErrorIs(t, err, shardmap.ErrBadKey)
	assert.Equal(t, float64(1), metric(t, r.reg, "drplane_router_lookups_total", map[string]string{"call": "route", "outcome": "bad_key"}))
	assert.GreaterOrEqual(t, metric(t, r.reg, "drplane_router_lookups_total", map[string]string{"call": "route", "outcome": "not_ready"}), float64(1))
}

func TestWatchAllKeyspaces(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	srv.Set(ordersTable(4), routertest.HashTable("users", "main", 8, 9, dcB1))
	r := startRouter(t, srv, router.Options{})
	waitReady(t, r.Router)
	assert.Equal(t, int64(4), r.Revision("orders"))
	assert.Equal(t, int64(9), r.Revision("users"))
	_, err := r.Route("carts", "1")
	require.ErrorIs(t, err, router.ErrUnknownKeyspace)

	// A keyspace created later arrives on the same stream.
	srv.Set(routertest.HashTable("carts", "main", 4, 12, dcA1))
	waitRevision(t, r.Router, "carts", 12)
	rt, err := r.Route("carts", "1")
	require.NoError(t, err)
	assert.True(t, rt.Local)
}

func TestInvalidTableKeepsThePreviousOne(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	srv.Set(ordersTable(20))
	r := startRouter(t, srv, router.Options{Keyspaces: []string{"orders"}})
	waitReady(t, r.Router)

	bad := []struct {
		name   string
		mutate func(*drplanev1.RoutingTable)
	}{
		{"gap", func(tb *drplanev1.RoutingTable) { tb.Shards[3].Lo = "1" }},
		{"bad bound", func(tb *drplanev1.RoutingTable) { tb.Shards[3].Hi = "-5" }},
		{"no state", func(tb *drplanev1.RoutingTable) { tb.Shards[5].State = drplanev1.ShardState_SHARD_STATE_UNSPECIFIED }},
		{"bad function", func(tb *drplanev1.RoutingTable) { tb.Function = "MODULO" }},
		{"no owner", func(tb *drplanev1.RoutingTable) { tb.Shards[0].OwnerDc = "" }},
		{"no shards", func(tb *drplanev1.RoutingTable) { tb.Shards = nil }},
		{"duplicate ids", func(tb *drplanev1.RoutingTable) { tb.Shards[1].Id = 0 }},
	}
	rejected := func() float64 {
		return metric(t, r.reg, "drplane_router_table_updates_total", map[string]string{"keyspace": "orders", "result": "rejected"})
	}
	for i, tc := range bad {
		tbl := ordersTable(21)
		tc.mutate(tbl)
		srv.Set(tbl)
		// One at a time: the server sends only the latest table of a
		// keyspace when they come faster than the router reads.
		check.For(t, waitFor, tick, func() error { return check.That(rejected() == float64(i+1), "%s", tc.name) })
	}
	assert.Equal(t, int64(20), r.Revision("orders"), "the invalid tables were not applied")
	_, err := r.Route("orders", key42)
	require.NoError(t, err)

	// A valid table after them applies.
	srv.Set(ordersTable(22))
	waitRevision(t, r.Router, "orders", 22)
}

func TestNewRejectsBadOptions(t *testing.T) {
	srv := routertest.Start(t, routertest.Options{})
	conn := srv.Dial()
	for name, o := range map[string]router.Options{
		"no conn":        {DC: dcA1},
		"no dc":          {Conn: conn},
		"empty keyspace": {Conn: conn, DC: dcA1, Keyspaces: []string{""}},
	} {
		_, err := router.New(o)
		require.ErrorIs(t, err, router.ErrOptions, name)
	}
	// Two routers on one registry: the second cannot register its metrics.
	r := startRouter(t, srv, router.Options{})
	_, err := router.New(router.Options{Conn: conn, DC: dcA1, Registry: r.reg})
	require.ErrorIs(t, err, router.ErrOptions)
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{router.ErrNotReady, true},
		{router.ErrShardFrozen, true},
		{router.ErrNoMaster, true},
		{router.ErrStale, true},
		{router.ErrUnknownKeyspace, false},
		{router.ErrClosed, false},
		{&router.NotOwner{Owner: dcB1}, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("Error 1290: read-only"), false},
		{apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_LEADER, "x"), true},
	} {
		assert.Equal(t, tc.want, router.IsRetryable(tc.err), "%v", tc.err)
	}
}
