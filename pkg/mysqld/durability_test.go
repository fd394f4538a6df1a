package mysqld_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
)

// ReadGTIDState reports the durability settings a real server runs with,
// and their changes.
func TestReadGTIDStateDurability(t *testing.T) {
	c := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 1, Args: []string{"--sync-binlog=0"}})
	ctx := context.Background()
	db := c.AdminDB(c.Master)

	st, err := mysqld.ReadGTIDState(ctx, db)
	require.NoError(t, err)
	require.Equal(t, mysqld.Durability{SyncBinlog: 0, FlushLogAtTrxCommit: 1, SemiSyncWaitPoint: "AFTER_SYNC"}, st.Durability,
		"sync_binlog=0 as started, MariaDB's default redo log flush, the master's semi-sync as set up")

	for _, q := range []string{
		"SET GLOBAL sync_binlog = 1",
		"SET GLOBAL innodb_flush_log_at_trx_commit = 2",
		"SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_COMMIT'",
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	st, err = mysqld.ReadGTIDState(ctx, db)
	require.NoError(t, err)
	require.Equal(t, mysqld.Durability{SyncBinlog: 1, FlushLogAtTrxCommit: 2, SemiSyncWaitPoint: "AFTER_COMMIT"}, st.Durability)
}
