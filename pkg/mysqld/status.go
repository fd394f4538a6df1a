package mysqld

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ReplicaStatus is the part of SHOW SLAVE STATUS the control plane reads.
type ReplicaStatus struct {
	// Configured is false when the server has no master (no status row).
	Configured bool
	// IOState is Slave_IO_Running verbatim: "Yes", "No" or "Connecting".
	IOState string
	// IORunning is true when the IO thread is connected ("Yes").
	IORunning bool
	// SQLRunning is true when the SQL thread runs.
	SQLRunning     bool
	MasterHost     string
	MasterPort     int
	MasterServerID uint32
	LastIOErrno    int
	LastIOError    string
	LastSQLErrno   int
	LastSQLError   string
	// SecondsBehindMaster is nil when the server reports NULL (IO or SQL
	// thread not running, lag unknown).
	SecondsBehindMaster *int64
	// UsingGTID is "No", "Slave_Pos" or "Current_Pos".
	UsingGTID string
	// GTIDIOPos is the GTID position the IO thread has received up to.
	GTIDIOPos string
	// GTIDSlavePos is the server's gtid_slave_pos (applied by replication).
	GTIDSlavePos string
	// SQLState is Slave_SQL_Running_State.
	SQLState string
}

// Healthy reports whether both replication threads run.
func (s ReplicaStatus) Healthy() bool { return s.IORunning && s.SQLRunning }

// ReadReplicaStatus runs SHOW SLAVE STATUS and reads it by column name.
func ReadReplicaStatus(ctx context.Context, db *sql.DB) (ReplicaStatus, error) {
	row, err := queryRowMap(ctx, db, "SHOW SLAVE STATUS")
	if err != nil {
		return ReplicaStatus{}, fmt.Errorf("mysqld: SHOW SLAVE STATUS: %w", err)
	}
	if row == nil {
		return ReplicaStatus{}, nil
	}
	return parseReplicaStatus(row)
}

// parseReplicaStatus builds a ReplicaStatus from one SHOW SLAVE STATUS row
// keyed by column name.
func parseReplicaStatus(row map[string]sql.NullString) (ReplicaStatus, error) {
	str := func(col string) string { return row[col].String }
	num := func(col string) (int64, error) {
		v := row[col]
		if !v.Valid || v.String == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v.String, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("mysqld: slave status column %s=%q: %w", col, v.String, err)
		}
		return n, nil
	}
	s := ReplicaStatus{
		Configured:   true,
		IOState:      str("Slave_IO_Running"),
		IORunning:    str("Slave_IO_Running") == "Yes",
		SQLRunning:   str("Slave_SQL_Running") == "Yes",
		MasterHost:   str("Master_Host"),
		LastIOError:  str("Last_IO_Error"),
		LastSQLError: str("Last_SQL_Error"),
		UsingGTID:    str("Using_Gtid"),
		GTIDIOPos:    str("Gtid_IO_Pos"),
		GTIDSlavePos: str("Gtid_Slave_Pos"),
		SQLState:     str("Slave_SQL_Running_State"),
	}
	var errs []error
	take := func(col string) int64 {
		n, err := num(col)
		errs = append(errs, err)
		return n
	}
	s.MasterPort = int(take("Master_Port"))
	s.MasterServerID = uint32(take("Master_Server_Id"))
	s.LastIOErrno = int(take("Last_IO_Errno"))
	s.LastSQLErrno = int(take("Last_SQL_Errno"))
	if v := row["Seconds_Behind_Master"]; v.Valid && v.String != "" {
		n := take("Seconds_Behind_Master")
		s.SecondsBehindMaster = &n
	}
	return s, errors.Join(errs...)
}

// GTIDState is an instance's replication position and role flags.
type GTIDState struct {
	BinlogPos  string // @@gtid_binlog_pos: what this server has in its binlog
	SlavePos   string // @@gtid_slave_pos: what replication applied
	CurrentPos string // @@gtid_current_pos
	ReadOnly   bool
	// ServerID is @@server_id.
	ServerID uint32
	// SemiSyncMasterEnabled is @@rpl_semi_sync_master_enabled.
	SemiSyncMasterEnabled bool
	// SemiSyncMasterActive is Rpl_semi_sync_master_status: semi-sync is
	// enabled and has not fallen back to async.
	SemiSyncMasterActive bool
	// SemiSyncMasterClients is Rpl_semi_sync_master_clients: connected
	// replicas that ack.
	SemiSyncMasterClients int
	// SemiSyncSlaveEnabled is @@rpl_semi_sync_slave_enabled.
	SemiSyncSlaveEnabled bool
	// SemiSyncSlaveActive is Rpl_semi_sync_slave_status.
	SemiSyncSlaveActive bool
	// Durability is what decides whether a commit survives a crash.
	Durability Durability
}

// Durability holds the settings that decide whether a committed transaction
// survives a crash of its host (an OS crash or a power loss, not only of
// mariadbd), and whether a failover can lose an acknowledged one.
type Durability struct {
	// SyncBinlog is @@sync_binlog: 1 flushes the binlog to disk at every
	// commit; 0 leaves it to the OS, N every N commits.
	SyncBinlog int
	// FlushLogAtTrxCommit is @@innodb_flush_log_at_trx_commit: 1 flushes
	// the redo log at every commit; 0 and 2 about once a second.
	FlushLogAtTrxCommit int
	// SemiSyncWaitPoint is @@rpl_semi_sync_master_wait_point: AFTER_SYNC
	// waits for a replica's ack before the commit is visible to anyone
	// (lossless failover); AFTER_COMMIT after, so others may read a
	// transaction a failover then loses.
	SemiSyncWaitPoint string
}

// gtidStateQuery reads the positions, flags and semi-sync status variables
// in one round trip. The status variables come from one pass over
// information_schema.GLOBAL_STATUS; a variable the server lacks reads as NULL.
const gtidStateQuery = `SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos, @@GLOBAL.gtid_current_pos,
	@@GLOBAL.read_only, @@GLOBAL.server_id, @@GLOBAL.rpl_semi_sync_master_enabled, @@GLOBAL.rpl_semi_sync_slave_enabled,
	@@GLOBAL.sync_binlog, @@GLOBAL.innodb_flush_log_at_trx_commit, @@GLOBAL.rpl_semi_sync_master_wait_point,
	s.master_status, s.master_clients, s.slave_status
FROM (SELECT
	MAX(IF(VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS', VARIABLE_VALUE, NULL)) AS master_status,
	MAX(IF(VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS', VARIABLE_VALUE, NULL)) AS master_clients,
	MAX(IF(VARIABLE_NAME = 'RPL_SEMI_SYNC_SLAVE_STATUS', VARIABLE_VALUE, NULL)) AS slave_status
	FROM information_schema.GLOBAL_STATUS
	WHERE VARIABLE_NAME IN ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS',
		'RPL_SEMI_SYNC_SLAVE_STATUS')) AS s`

// ReadGTIDState reads the GTID positions, read_only, the semi-sync state and
// the durability settings in one query. It avoids statements that block while a commit waits for a
// semi-sync ack (SHOW MASTER STATUS does).
func ReadGTIDState(ctx context.Context, db *sql.DB) (GTIDState, error) {
	var st GTIDState
	var masterStatus, masterClients, slaveStatus sql.NullString
	err := db.QueryRowContext(ctx, gtidStateQuery).Scan(&st.BinlogPos, &st.SlavePos, &st.CurrentPos,
		&st.ReadOnly, &st.ServerID, &st.SemiSyncMasterEnabled, &st.SemiSyncSlaveEnabled,
		&st.Durability.SyncBinlog, &st.Durability.FlushLogAtTrxCommit, &st.Durability.SemiSyncWaitPoint,
		&masterStatus, &masterClients, &slaveStatus)
	if err != nil {
		return GTIDState{}, fmt.Errorf("mysqld: read GTID state: %w", err)
	}
	if err := st.setSemiSyncStatus(masterStatus, masterClients, slaveStatus); err != nil {
		return GTIDState{}, err
	}
	return st, nil
}

// setSemiSyncStatus fills the semi-sync status fields from the values of
// Rpl_semi_sync_master_status, Rpl_semi_sync_master_clients and
// Rpl_semi_sync_slave_status (NULL when absent).
func (st *GTIDState) setSemiSyncStatus(masterStatus, masterClients, slaveStatus sql.NullString) error {
	st.SemiSyncMasterActive = strings.EqualFold(masterStatus.String, "ON")
	st.SemiSyncSlaveActive = strings.EqualFold(slaveStatus.String, "ON")
	if v := masterClients.String; masterClients.Valid && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("mysqld: Rpl_semi_sync_master_clients=%q: %w", v, err)
		}
		st.SemiSyncMasterClients = n
	}
	return nil
}

// queryRowMap returns the first row of query keyed by column name, or nil
// when there is none.
func queryRowMap(ctx context.Context, db *sql.DB, query string) (map[string]sql.NullString, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(map[string]sql.NullString, len(cols))
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out, rows.Err()
}
