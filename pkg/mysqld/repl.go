package mysqld

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Replication errors.
var (
	// ErrGTIDWaitTimeout means MASTER_GTID_WAIT gave up before the position
	// was applied.
	ErrGTIDWaitTimeout = errors.New("mysqld: GTID wait timed out")
	// ErrBadGTIDMode means ChangeMaster got an unknown MASTER_USE_GTID value.
	ErrBadGTIDMode = errors.New("mysqld: bad MASTER_USE_GTID mode")
)

// GTIDMode is the MASTER_USE_GTID setting of CHANGE MASTER.
type GTIDMode string

const (
	// SlavePos resumes from what replication applied; the normal mode.
	SlavePos GTIDMode = "slave_pos"
	// CurrentPos resumes from the server's own binlog too; for an old master
	// rejoining as a replica (its gtid_slave_pos is empty).
	CurrentPos GTIDMode = "current_pos"
)

const (
	// DefaultStopSlaveTimeout bounds StopSlave when ctx has no deadline:
	// STOP SLAVE may try to reach a dead or paused master.
	DefaultStopSlaveTimeout = 10 * time.Second
	// Detection settings applied by ChangeMaster: a paused master is noticed
	// in about 0.8 s instead of a minute (a heartbeat every 0.25 s, the
	// connection given up after 1 s of silence), and STOP SLAVE on a replica
	// of a paused master returns after about 1 s instead of 2 s: a
	// semi-sync replica connects to its master to kill its dump thread, and
	// waits kill_conn_timeout (default 5 s, capped by the net timeout) for
	// it. Measured on MariaDB 10.11.
	connectRetrySeconds = 1
	heartbeatPeriod     = "0.25"
	slaveNetTimeout     = 1
	killConnTimeout     = 1
)

// Users are the accounts the control plane uses on every instance.
type Users struct {
	// ReplUser has REPLICATION SLAVE and SLAVE MONITOR only (replicas, and
	// binlog capture, which reads the replicas' received positions).
	ReplUser     string
	ReplPassword string
	// AdminUser is the agent's account: all privileges, so it can promote,
	// fence and repoint.
	AdminUser     string
	AdminPassword string
}

// CreateUsers creates (or updates the passwords of) the replication and
// admin accounts. Run it on the master: the statements replicate.
func CreateUsers(ctx context.Context, db *sql.DB, u Users) error {
	if u.ReplUser == "" || u.AdminUser == "" {
		return fmt.Errorf("%w: ReplUser and AdminUser are required", ErrInvalidOptions)
	}
	repl := account(u.ReplUser, "%")
	admin := account(u.AdminUser, "%")
	return execAll(ctx, db,
		"CREATE USER IF NOT EXISTS "+repl+" IDENTIFIED BY "+quoteString(u.ReplPassword),
		"ALTER USER "+repl+" IDENTIFIED BY "+quoteString(u.ReplPassword),
		"GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO "+repl,
		"CREATE USER IF NOT EXISTS "+admin+" IDENTIFIED BY "+quoteString(u.AdminPassword),
		"ALTER USER "+admin+" IDENTIFIED BY "+quoteString(u.AdminPassword),
		"GRANT ALL PRIVILEGES ON *.* TO "+admin+" WITH GRANT OPTION",
	)
}

// CreateAppUser creates database and an application account with ALL on
// that database only: no SUPER, READ_ONLY ADMIN or REPLICATION privilege, so
// read_only=1 really stops it. Run it on the master: the statements
// replicate.
func CreateAppUser(ctx context.Context, admin *sql.DB, user, pass, database string) error {
	if user == "" || database == "" {
		return fmt.Errorf("%w: app user and database are required", ErrInvalidOptions)
	}
	acct := account(user, "%")
	return execAll(ctx, admin,
		"CREATE DATABASE IF NOT EXISTS "+quoteIdent(database),
		"CREATE USER IF NOT EXISTS "+acct+" IDENTIFIED BY "+quoteString(pass),
		"ALTER USER "+acct+" IDENTIFIED BY "+quoteString(pass),
		"GRANT ALL PRIVILEGES ON "+quoteIdent(database)+".* TO "+acct,
	)
}

// ApplySQL runs statements in order on one connection, with database
// selected first when it is not empty. Use it for schema on the master.
func ApplySQL(ctx context.Context, db *sql.DB, database string, stmts ...string) error {
	if database != "" {
		stmts = append([]string{"USE " + quoteIdent(database)}, stmts...)
	}
	return execAll(ctx, db, stmts...)
}

// ChangeMaster points a stopped replica at a master with GTID replication,
// fast reconnects (MASTER_CONNECT_RETRY=1) and a 0.25 s heartbeat, and sets
// slave_net_timeout=1 so a silent master is noticed in under a second, and
// rpl_semi_sync_slave_kill_conn_timeout=1 so STOP SLAVE does not wait 2 s
// on a paused master.
func ChangeMaster(ctx context.Context, replica *sql.DB, masterHost string, masterPort int,
	user, pass string, useGTID GTIDMode) error {
	switch useGTID {
	case SlavePos, CurrentPos:
	default:
		return fmt.Errorf("%w: %q", ErrBadGTIDMode, useGTID)
	}
	return execAll(ctx, replica,
		"SET GLOBAL slave_net_timeout = "+strconv.Itoa(slaveNetTimeout),
		"SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = "+strconv.Itoa(killConnTimeout),
		"CHANGE MASTER TO MASTER_HOST = "+quoteString(masterHost)+
			", MASTER_PORT = "+strconv.Itoa(masterPort)+
			", MASTER_USER = "+quoteString(user)+
			", MASTER_USE_GTID = "+string(useGTID)+
			", MASTER_CONNECT_RETRY = "+strconv.Itoa(connectRetrySeconds)+
			", MASTER_HEARTBEAT_PERIOD = "+heartbeatPeriod+
			", MASTER_PASSWORD = "+quoteString(pass),
	)
}

// StartSlave starts both replication threads.
func StartSlave(ctx context.Context, db *sql.DB) error {
	return execAll(ctx, db, "START SLAVE")
}

// StopSlave stops both replication threads. It is bounded by ctx, or by
// DefaultStopSlaveTimeout when ctx has no deadline: across a partition the
// server may keep trying to reach the master.
func StopSlave(ctx context.Context, db *sql.DB) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStopSlaveTimeout)
		defer cancel()
	}
	return execAll(ctx, db, "STOP SLAVE")
}

// ResetSlaveAll forgets the replica's master (after STOP SLAVE), as at
// promotion.
func ResetSlaveAll(ctx context.Context, db *sql.DB) error {
	return execAll(ctx, db, "RESET SLAVE ALL")
}

// EnableSemiSyncMaster turns on lossless semi-sync on the current master:
// AFTER_SYNC, waiting even when no replica is connected, for up to timeout
// before falling back to async. Call it only on the master and after its
// replicas are attached: with no replica the first commit waits the whole
// timeout, and on a replica the setting stalls its SQL thread.
func EnableSemiSyncMaster(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("%w: semi-sync timeout must be > 0", ErrInvalidOptions)
	}
	return execAll(ctx, db,
		"SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
		"SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
		"SET GLOBAL rpl_semi_sync_master_timeout = "+strconv.FormatInt(timeout.Milliseconds(), 10),
		"SET GLOBAL rpl_semi_sync_master_enabled = 1",
	)
}

// DisableSemiSyncMaster turns master-side semi-sync off, as on every
// demotion: a replica that keeps it on blocks its own SQL thread.
func DisableSemiSyncMaster(ctx context.Context, db *sql.DB) error {
	return execAll(ctx, db, "SET GLOBAL rpl_semi_sync_master_enabled = 0")
}

// EnableSemiSyncReplica makes the server ack as a semi-sync replica. Set it
// before START SLAVE: the IO thread reads it when it connects. Instances
// started by this package boot with it on.
func EnableSemiSyncReplica(ctx context.Context, db *sql.DB) error {
	return execAll(ctx, db, "SET GLOBAL rpl_semi_sync_slave_enabled = 1")
}

// SetReadOnly sets read_only. Note that read_only does not stop root or any
// account with SUPER or READ_ONLY ADMIN.
func SetReadOnly(ctx context.Context, db *sql.DB, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return execAll(ctx, db, "SET GLOBAL read_only = "+v)
}

// WaitForGTID waits (MASTER_GTID_WAIT) until the replica has applied pos, at
// most timeout. It returns ErrGTIDWaitTimeout when the wait ran out.
func WaitForGTID(ctx context.Context, db *sql.DB, pos string, timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("%w: GTID wait timeout must be > 0", ErrInvalidOptions)
	}
	var res sql.NullInt64
	err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout.Seconds()).Scan(&res)
	switch {
	case err != nil:
		return fmt.Errorf("mysqld: MASTER_GTID_WAIT(%s): %w", pos, err)
	case !res.Valid:
		return fmt.Errorf("mysqld: MASTER_GTID_WAIT(%s) returned NULL", pos)
	case res.Int64 != 0:
		return fmt.Errorf("%w: %s not applied within %v", ErrGTIDWaitTimeout, pos, timeout)
	}
	return nil
}
