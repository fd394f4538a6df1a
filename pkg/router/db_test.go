package router_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/router/routertest"
)

const ordersDDL = `CREATE TABLE orders (
	id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, note VARCHAR(255),
	updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`

// TestWriteDBUsesTheOwnerMaster writes through the handle WriteDB returns
// to a real MariaDB master, then moves the DC's master to the other
// instance in the routing table: WriteDB switches to it and the replaced
// handle is closed after the grace period.
func TestWriteDBUsesTheOwnerMaster(t *testing.T) {
	cl := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 2, Schema: []string{ordersDDL}})
	first, second := cl.Master, cl.Replicas[0]

	srv := routertest.Start(t, routertest.Options{})
	tbl := routertest.SetMaster(ordersTable(1), dcA1, first.Name(), first.Addr(), 1)
	srv.Set(tbl)
	r := startRouter(t, srv, router.Options{
		Keyspaces: []string{"orders"},
		Grace:     200 * time.Millisecond,
		DB: func(m router.Master) (*sql.DB, error) {
			cfg := mysql.NewConfig()
			cfg.User, cfg.Passwd, cfg.DBName = cl.AppUser, cl.AppPassword, cl.Database
			cfg.Net, cfg.Addr = "tcp", m.Addr
			cfg.Timeout = 2 * time.Second
			return sql.Open("mysql", cfg.FormatDSN())
		},
	})
	waitReady(t, r.Router)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	db, rt, err := r.WriteDB(ctx, "orders", key42)
	require.NoError(t, err)
	assert.Equal(t, first.Addr(), rt.Master.Addr)
	_, err = db.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (1, 42, 1250, 'via router')")
	require.NoError(t, err)
	var n int
	require.NoError(t, cl.AdminDB(first).QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.orders WHERE id = 1 AND user_id = 42").Scan(&n))
	assert.Equal(t, 1, n, "the row is on the owner master")
	assert.Equal(t, first.ServerID(), serverID(ctx, t, db))

	// The HA agent moved dc-a1's master: the coordinator sends the new table.
	routertest.SetMaster(tbl, dcA1, second.Name(), second.Addr(), 2)
	tbl.MapRevision = 2
	srv.Set(tbl)
	waitRevision(t, r.Router, "orders", 2)
	db2, rt, err := r.WriteDB(ctx, "orders", key42)
	require.NoError(t, err)
	assert.NotSame(t, db, db2)
	assert.Equal(t, router.Master{DC: dcA1, Cluster: "main", Instance: second.Name(), Addr: second.Addr(), Term: 2}, rt.Master)
	assert.Equal(t, second.ServerID(), serverID(ctx, t, db2), "the handle reaches the new master")
	// (In this test nobody promoted it: it is still a read-only replica,
	// which refuses the application's writes.)
	_, err = db2.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents) VALUES (2, 42, 1)")
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me) && me.Number == 1290, "want ERROR 1290 read-only, got %v", err)

	// The replaced handle still works during the grace period, then closes.
	check.For(t, waitFor, 10*time.Millisecond, func() error {
		err := db.PingContext(ctx)
		return check.That(err != nil && err.Error() == "sql: database is closed", "the replaced handle is closed after the grace period")
	})
	require.NoError(t, db2.PingContext(ctx), "the current handle stays open")
}

func serverID(ctx context.Context, t *testing.T, db *sql.DB) uint32 {
	t.Helper()
	var id uint32
	require.NoError(t, db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
	return id
}
