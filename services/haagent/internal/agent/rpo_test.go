package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// TestAsyncMasterFailoverRPOUnknown: the master's replicas are cut off (the
// replication account locked on the master alone), so past the semi-sync
// timeout it acknowledges writes asynchronously; then it is killed. The
// failover promotes the most advanced replica and loses acknowledged writes,
// and its record must not claim an RPO it cannot know: it says unknown (-1)
// and names why, instead of counting from the old master's last observed
// position (writes acknowledged after that observation were invisible).
func TestAsyncMasterFailoverRPOUnknown(t *testing.T) {
	e := hatest.Start(t, hatest.Options{SemiSyncTimeout: time.Second})
	leader(t, startAgent(t, e, testConfig(e, "agent-1"), nil))
	w := e.StartWriter()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "acknowledged writes") })

	ctx := context.Background()
	old := e.DB.Master
	db, err := old.Admin(ctx)
	require.NoError(t, err)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	var host string
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT host FROM mysql.user WHERE user = ?", e.DB.Users.ReplUser).Scan(&host))
	_, err = conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0")
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, fmt.Sprintf("ALTER USER '%s'@'%s' ACCOUNT LOCK", e.DB.Users.ReplUser, host))
	require.NoError(t, err)
	rows, err := conn.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
	require.NoError(t, err)
	var dumps []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		dumps = append(dumps, id)
	}
	require.NoError(t, rows.Close())
	require.NotEmpty(t, dumps)
	for _, id := range dumps {
		_, _ = conn.ExecContext(ctx, fmt.Sprintf("KILL %d", id))
	}

	// The agent sees the master acknowledging without semi-sync, and the
	// writer keeps getting acknowledgements.
	check.For(t, 20*time.Second, check.Every, func() error {
		sts, err := e.Store.InstanceStatuses(ctx, hatest.DC)
		if err != nil {
			return err
		}
		for _, st := range sts {
			if st.Name == old.Name() && st.Reachable && !st.SemiSyncMaster {
				return nil
			}
		}
		return check.That(false, "the master observed with semi-sync off")
	})
	base := w.Acked()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= base+20, "asynchronous acknowledgements") })

	require.NoError(t, old.Kill())
	rec := masterChanged(t, e, old.Name(), 20*time.Second)
	var fr state.FailoverRecord
	check.For(t, 20*time.Second, check.Every, func() error {
		recs := failovers(t, e)
		if len(recs) == 0 || !recs[len(recs)-1].Done() {
			return check.That(false, "the failover recorded")
		}
		fr = recs[len(recs)-1]
		return nil
	})
	acked, _ := w.Stop()
	missing, err := e.MissingAcked(rec.Addr, acked)
	require.NoError(t, err)
	require.NotEmpty(t, missing, "the scenario must lose acknowledged writes")
	assert.Equal(t, state.OutcomeSucceeded, fr.Outcome)
	assert.Equal(t, int64(-1), fr.RPOTransactions, "%d acknowledged writes lost; the record claims %d (%s)",
		len(missing), fr.RPOTransactions, fr.LostGTIDs)
	found := false
	for _, st := range fr.Steps {
		if st.Name == "rpo_unknown" {
			found = true
			assert.Contains(t, st.Error, "without an active semi-sync replica")
		}
	}
	assert.True(t, found, "no rpo_unknown step in %+v", fr.Steps)
	t.Logf("%d acknowledged writes lost; record RPO %d, lost GTIDs %q", len(missing), fr.RPOTransactions, fr.LostGTIDs)
}
