package harness

import (
	"context"
	"database/sql"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/mysqld"
)

const ordersTable = `CREATE TABLE orders (
	id BIGINT PRIMARY KEY,
	user_id BIGINT NOT NULL,
	amount_cents BIGINT NOT NULL,
	note VARCHAR(255),
	updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`

const replicationDeadline = 10 * time.Second

func TestMariaDBReplication(t *testing.T) {
	started := time.Now()
	c := StartMariaDB(t, MariaDBOptions{Schema: []string{ordersTable}})
	t.Logf("3-instance semi-sync MariaDB cluster ready in %v", time.Since(started).Round(time.Millisecond))
	ctx := context.Background()

	master := mustGTIDState(t, c.AdminDB(c.Master))
	require.False(t, master.ReadOnly, "master must be writable")
	require.True(t, master.SemiSyncMasterActive, "semi-sync must be active on the master")
	require.Equal(t, 2, master.SemiSyncMasterClients)
	for _, r := range c.Replicas {
		st := mustGTIDState(t, c.AdminDB(r))
		require.True(t, st.ReadOnly, "%s must be read_only", r.Name())
		require.False(t, st.SemiSyncMasterEnabled, "%s must not be a semi-sync master", r.Name())
		rs, err := mysqld.ReadReplicaStatus(ctx, c.AdminDB(r))
		require.NoError(t, err)
		require.True(t, rs.Healthy(), "%s: %+v", r.Name(), rs)
		require.Equal(t, c.Master.Port(), rs.MasterPort)
		require.Equal(t, "Slave_Pos", rs.UsingGTID)
		require.NotNil(t, rs.SecondsBehindMaster)
	}

	yesBefore := semiSyncYesTx(t, c.AdminDB(c.Master))
	app := c.AppDB(c.Master)
	_, err := app.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (1, 42, 1999, 'first')")
	require.NoError(t, err)
	require.Greater(t, semiSyncYesTx(t, c.AdminDB(c.Master)), yesBefore, "the commit must be acked by a semi-sync replica")

	for _, r := range c.Replicas {
		db := c.AppDB(r)
		check.For(t, replicationDeadline, 10*time.Millisecond, func() error {
			var amount int64
			err := db.QueryRowContext(ctx, "SELECT amount_cents FROM orders WHERE id = 1").Scan(&amount)
			if err != nil {
				return err
			}
			return check.That(amount == 1999, "row not replicated to %s", r.Name())
		})

		_, err := db.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents) VALUES (2, 42, 1)")
		require.Error(t, err, "app user must not write to read_only %s", r.Name())
		require.Equal(t, uint16(mysqld.ErrnoReadOnly), mysqld.ErrorNumber(err), "%s: %v", r.Name(), err)
		require.True(t, mysqld.IsReadOnly(err))
	}
}

func TestMariaDBReplicaKillRestart(t *testing.T) {
	c := StartMariaDB(t, MariaDBOptions{Schema: []string{ordersTable}})
	ctx := context.Background()
	victim := c.Replicas[0]
	oldPid, port := victim.Pid(), victim.Port()
	require.NotZero(t, oldPid)

	require.NoError(t, victim.Kill())
	require.False(t, victim.Running())
	require.Zero(t, victim.Pid())
	select {
	case <-victim.Exited():
	default:
		t.Fatal("Exited() not closed after Kill")
	}

	// The other replica still acks, so the master keeps committing.
	app := c.AppDB(c.Master)
	for id := 1; id <= 20; id++ {
		_, err := app.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents) VALUES (?, ?, ?)", id, id%7, id*100)
		require.NoError(t, err)
	}

	restarted := time.Now()
	require.NoError(t, victim.Restart(ctx))
	t.Logf("replica restarted after kill -9 in %v", time.Since(restarted).Round(time.Millisecond))
	require.Equal(t, port, victim.Port(), "restart must keep the port")
	require.NotEqual(t, oldPid, victim.Pid())

	st := mustGTIDState(t, c.AdminDB(victim))
	require.True(t, st.ReadOnly, "a restarted instance must come back read_only")

	c.WaitReplicas(30 * time.Second)
	var n int
	require.NoError(t, c.AppDB(victim).QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&n))
	require.Equal(t, 20, n)

	// The restarted replica acks again as a semi-sync replica.
	masterDB := c.AdminDB(c.Master)
	check.For(t, replicationDeadline, 10*time.Millisecond, func() error {
		st, err := mysqld.ReadGTIDState(ctx, masterDB)
		if err != nil {
			return err
		}
		return check.That(st.SemiSyncMasterClients == 2, "st.SemiSyncMasterClients = %v, want 2", st.SemiSyncMasterClients)
	})
}

func TestMariaDBStopRestart(t *testing.T) {
	c := StartMariaDB(t, MariaDBOptions{Instances: 2})
	ctx := context.Background()
	r := c.Replicas[0]

	admin := c.AdminDB(r)
	require.NoError(t, mysqld.StopSlave(ctx, admin))
	rs, err := mysqld.ReadReplicaStatus(ctx, admin)
	require.NoError(t, err)
	require.True(t, rs.Configured)
	require.False(t, rs.IORunning)
	require.False(t, rs.SQLRunning)
	require.Nil(t, rs.SecondsBehindMaster, "lag is unknown while replication is stopped")
	require.NoError(t, mysqld.StartSlave(ctx, admin))
	c.WaitReplicas(30 * time.Second)

	// A paused server still stops gracefully.
	require.NoError(t, r.Signal(syscall.SIGSTOP))
	require.NoError(t, r.Stop(ctx))
	require.False(t, r.Running())
	require.NoError(t, r.Wait(ctx), "a graceful stop exits cleanly")
	require.ErrorIs(t, r.Signal(syscall.SIGCONT), mysqld.ErrNotRunning)
	require.NoError(t, r.Start(ctx))
	require.ErrorIs(t, r.Start(ctx), mysqld.ErrRunning)
	c.WaitReplicas(30 * time.Second)
}

func mustGTIDState(t *testing.T, db *sql.DB) mysqld.GTIDState {
	t.Helper()
	st, err := mysqld.ReadGTIDState(context.Background(), db)
	require.NoError(t, err)
	return st
}

func semiSyncYesTx(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var name string
	var n int64
	err := db.QueryRowContext(context.Background(), "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_yes_tx'").Scan(&name, &n)
	if errors.Is(err, sql.ErrNoRows) {
		t.Fatal("Rpl_semi_sync_master_yes_tx missing")
	}
	require.NoError(t, err)
	return n
}
