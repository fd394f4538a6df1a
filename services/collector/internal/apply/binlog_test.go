package apply_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/collector/internal/apply"
)

// skipReplicationFlag is LOG_EVENT_SKIP_REPLICATION_F, set on the events of
// transactions committed with skip_replication=1.
const skipReplicationFlag = 0x8000

// binlogTxn is one transaction read back from the binlog.
type binlogTxn struct {
	gtid   string
	tables map[string]bool
	flags  []uint16 // of every event, GTID event included
}

// testSkipFlag reads the master's binlog with go-mysql's BinlogSyncer (the
// way reship captures) and checks that every event of the collector's
// transactions carries the skip_replication flag, and that an ordinary
// application write does not.
func testSkipFlag(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	admin := sh.db.AdminDB(sh.db.Master)
	var from string
	require.NoError(t, admin.QueryRowContext(t.Context(), "SELECT @@gtid_binlog_pos").Scan(&from))

	b.start(func(o *apply.Options) { o.BatchSize = 8 }, nil)
	evs := m.workload(&gen{origin: dcA1, server: 11}, 40, 10000, 9)
	b.publish(evs...)
	b.waitDrained(len(evs), waitLong)
	_, err := b.app.ExecContext(t.Context(), "INSERT INTO plain VALUES (1)")
	require.NoError(t, err)
	var to string
	require.NoError(t, admin.QueryRowContext(t.Context(), "SELECT @@gtid_binlog_pos").Scan(&to))

	txns := binlogTxns(t, sh, from, to)

	applied, plain := 0, 0
	for _, tx := range txns {
		switch {
		case tx.tables[apply.DedupTable]:
			applied++
			for i, f := range tx.flags {
				assert.NotZero(t, f&skipReplicationFlag, "event %d of collector transaction %s lacks the skip flag", i, tx.gtid)
			}
		case tx.tables["plain"]:
			plain++
			for i, f := range tx.flags {
				assert.Zero(t, f&skipReplicationFlag, "event %d of the application's transaction %s has the skip flag", i, tx.gtid)
			}
		}
	}
	t.Logf("%d collector transactions read back, every event flagged 0x8000; the application write is not", applied)
	assert.GreaterOrEqual(t, applied, len(evs)/8, "the collector's transactions are in the binlog")
	assert.Equal(t, 1, plain)
}

// binlogTxns reads the master's binlog from GTID position from up to the
// transaction with GTID to.
func binlogTxns(t *testing.T, sh *shared, from, to string) []*binlogTxn {
	t.Helper()
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: 4242, Flavor: gomysql.MariaDBFlavor, Host: sh.db.Master.Host(), Port: uint16(sh.db.Master.Port()),
		User: sh.db.Users.ReplUser, Password: sh.db.Users.ReplPassword, DisableRetrySync: true,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(syncer.Close)
	pos, err := gomysql.ParseMariadbGTIDSet(from)
	require.NoError(t, err)
	streamer, err := syncer.StartSyncGTID(pos)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	var txns []*binlogTxn
	var cur *binlogTxn
	for {
		ev, err := streamer.GetEvent(ctx)
		require.NoError(t, err)
		if g, ok := ev.Event.(*replication.MariadbGTIDEvent); ok {
			cur = &binlogTxn{gtid: fmt.Sprintf("%d-%d-%d", g.GTID.DomainID, g.GTID.ServerID, g.GTID.SequenceNumber), tables: map[string]bool{}}
			txns = append(txns, cur)
		}
		if cur == nil {
			continue // rotate and format events before the first transaction
		}
		cur.flags = append(cur.flags, ev.Header.Flags)
		if tm, ok := ev.Event.(*replication.TableMapEvent); ok {
			cur.tables[string(tm.Table)] = true
		}
		if _, ok := ev.Event.(*replication.XIDEvent); ok && cur.gtid == to {
			break
		}
	}

	return txns
}
