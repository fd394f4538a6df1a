package repair_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
	"github.com/drplane/drplane/services/haagent/internal/repair"
)

// world is a cluster whose master db1 was deposed the way a paused master
// is: its replicas stopped acknowledging, commits waited for an ack, the
// fence killed them (they committed on db1 only), db2 was promoted and db3
// repointed, and db2 took writes past db1's errant sequence numbers.
type world struct {
	e          *hatest.Env
	ops        *failover.Ops
	fence      state.Fence
	old, cand  *mysqld.Instance
	master     state.MasterRecord
	errantIDs  []int64
	ackedIDs   []int64
	oldBinlog  string
	failoverID string
}

// depose deposes db1 with inflight writes waiting for an ack (inserts of
// ids 11, 12, …, or stmt when given) and a failover record counting rpo.
func depose(t *testing.T, inflight int, rpo int64, stmt ...string) *world {
	e := hatest.Start(t, hatest.Options{})
	ctx := context.Background()
	u := e.DB.Users
	w := &world{e: e, old: e.DB.Master, cand: e.DB.Replicas[0]}
	w.ops = failover.NewOps(failover.Creds{User: u.AdminUser, Password: u.AdminPassword,
		ReplUser: u.ReplUser, ReplPassword: u.ReplPassword}, 60*time.Second, 2*time.Second)
	t.Cleanup(w.ops.Close)
	resp, err := e.Cli.Put(ctx, e.Store.Key("test-fence"), "leader")
	require.NoError(t, err)
	w.fence = state.Fence{Key: e.Store.Key("test-fence"), Rev: resp.Header.Revision}

	app := e.AppDB(w.old.Addr(), 5*time.Second)
	for id := int64(1); id <= 5; id++ {
		_, err := app.Exec("INSERT INTO "+hatest.Table+" (id) VALUES (?)", id)
		require.NoError(t, err)
		w.ackedIDs = append(w.ackedIDs, id)
	}
	e.DB.WaitReplicas(10 * time.Second)
	for _, r := range e.DB.Replicas {
		_, err := e.DB.AdminDB(r).Exec("STOP SLAVE")
		require.NoError(t, err)
	}
	errs := make(chan error, inflight)
	for i := range inflight {
		id := int64(11 + i)
		go func() {
			var err error
			if i < len(stmt) {
				_, err = app.Exec(stmt[i])
			} else {
				_, err = app.Exec("INSERT INTO "+hatest.Table+" (id) VALUES (?)", id)
			}
			errs <- err
		}()
	}
	// Every in-flight write is committing: one waits for an ack, the others
	// queue behind it.
	check.For(t, 10*time.Second, check.Every, func() error {
		var n int
		err := e.DB.AdminDB(w.old).QueryRow(`SELECT COUNT(*) FROM information_schema.processlist
			WHERE user = ? AND state IN ('Commit', 'Waiting for semi-sync ACK from slave')`, e.DB.AppUser).Scan(&n)
		if err != nil {
			return err
		}
		return check.That(n == inflight, "%d of %d writes committing", n, inflight)
	})
	require.NoError(t, w.ops.Fence(ctx, w.old.Addr()))
	for range inflight {
		select {
		case err := <-errs:
			require.Error(t, err, "a write waiting for an ack was acknowledged")
		case <-time.After(10 * time.Second):
			t.Fatal("an in-flight write neither failed nor succeeded")
		}
	}
	w.oldBinlog = binlogState(t, e, w.old)
	// What the fence's kills committed on db1 alone is errant.
	ids, err := tableIDs(e, w.old)
	require.NoError(t, err)
	for i := len(stmt); i < inflight; i++ {
		if id := int64(11 + i); ids[id] {
			w.errantIDs = append(w.errantIDs, id)
		}
	}
	if inflight > len(stmt) {
		require.NotEmpty(t, w.errantIDs, "no in-flight write committed on db1")
	}

	require.NoError(t, w.ops.MakeMaster(ctx, w.cand.Addr()))
	require.NoError(t, w.ops.Replicate(ctx, e.DB.Replicas[1].Addr(), w.cand.Addr(), mysqld.SlavePos))
	old, rev := e.Master()
	w.master = state.MasterRecord{DC: hatest.DC, Cluster: hatest.Cluster, Instance: w.cand.Name(), Addr: w.cand.Addr(),
		Term: old.Term + 1, UpdatedAt: time.Now().UTC(), Reason: "test failover"}
	_, err = e.Store.PutMaster(ctx, w.master, rev, nil)
	require.NoError(t, err)
	now := time.Now().UTC()
	rec := state.FailoverRecord{ID: state.NewRecordID(now, hatest.DC, hatest.Cluster), DC: hatest.DC, Cluster: hatest.Cluster,
		Kind: state.KindFailover, Trigger: "analysis", Analysis: "DeadMaster", OldMaster: w.old.Name(), NewMaster: w.cand.Name(),
		Outcome: state.OutcomeSucceeded, DetectedAt: now, StartedAt: now, FinishedAt: now, RPOTransactions: rpo}
	require.NoError(t, e.Store.PutFailover(ctx, rec, nil))
	w.failoverID = rec.ID

	newApp := e.AppDB(w.cand.Addr(), 5*time.Second)
	for id := int64(100); id < 110; id++ {
		_, err := newApp.Exec("INSERT INTO "+hatest.Table+" (id) VALUES (?)", id)
		require.NoError(t, err)
		w.ackedIDs = append(w.ackedIDs, id)
	}
	return w
}

func (w *world) repairer(t *testing.T, mode repair.Mode) *repair.Repairer {
	u := w.e.DB.Users
	r := repair.New(repair.Options{DC: hatest.DC, AgentID: "agent-test", Mode: mode, Dir: t.TempDir(),
		User: u.AdminUser, Password: u.AdminPassword, Ops: w.ops, Store: w.e.Store, Logger: zerolog.Nop()})
	t.Cleanup(r.Close)
	return r
}

func (w *world) job(t *testing.T) repair.Job {
	var in topology.Instance
	for _, i := range w.e.TopoCluster().Instances {
		if i.Name == w.old.Name() {
			in = i
		}
	}
	require.NotEmpty(t, in.Name)
	return repair.Job{Cluster: w.e.TopoCluster(), Instance: in, Master: w.master, Fence: w.fence}
}

// TestRewindDeposedMaster: the deposed master's three never-acknowledged
// transactions are saved to a file, undone, and it replicates from the new
// master with every acknowledged write and none of them.
func TestRewindDeposedMaster(t *testing.T) {
	w := depose(t, 3, 0)
	res, err := w.repairer(t, repair.ModeAuto).Repair(context.Background(), w.job(t))
	require.NoError(t, err)
	require.Equal(t, repair.Rewound, res.Outcome, "reason: %s", res.Record.Reason)
	rec := res.Record
	assert.Equal(t, len(w.errantIDs), rec.Transactions)
	assert.Equal(t, w.failoverID, rec.FailoverID)
	t.Logf("rewound %s (%d transactions), resumed at %s, images in %s", rec.Errant, rec.Transactions, rec.Resume, rec.Images)

	check.For(t, 20*time.Second, check.Every, func() error {
		if !replicatesFrom(w.old, w.cand.Addr()) {
			return fmt.Errorf("db1 does not replicate from %s", w.cand.Addr())
		}
		ids, err := tableIDs(w.e, w.old)
		if err != nil {
			return err
		}
		for _, id := range w.ackedIDs {
			if !ids[id] {
				return fmt.Errorf("acknowledged id %d missing on db1", id)
			}
		}
		for _, id := range w.errantIDs {
			if ids[id] {
				return fmt.Errorf("errant id %d still on db1", id)
			}
		}
		return nil
	})
	ro, err := readOnly(w.old)
	require.NoError(t, err)
	assert.True(t, ro, "the rejoined master is read-only")

	images, err := os.ReadFile(rec.Images)
	require.NoError(t, err)
	for _, g := range []string{"0-1-", rec.Errant} {
		assert.Contains(t, string(images), g)
	}
	for _, id := range w.errantIDs {
		assert.Contains(t, string(images), "@1="+strconv.FormatInt(id, 10), "the row image of errant id %d", id)
	}
	stored, err := w.e.Store.Repair(context.Background(), hatest.DC, hatest.Cluster, w.old.Name())
	require.NoError(t, err)
	assert.Equal(t, state.RepairRejoined, stored.State)
	assert.Equal(t, rec.Images, stored.Images)
}

// TestRefuseLossyFailover: when the failover that deposed it lost
// transactions, the errant ones may have been acknowledged: the instance
// is left fenced with its binlog untouched, and the refusal says why.
func TestRefuseLossyFailover(t *testing.T) {
	w := depose(t, 2, 2)
	res, err := w.repairer(t, repair.ModeAuto).Repair(context.Background(), w.job(t))
	require.NoError(t, err)
	require.Equal(t, repair.Refused, res.Outcome)
	assert.Contains(t, res.Record.Reason, "lost 2 transactions")
	assert.Equal(t, w.oldBinlog, binlogState(t, w.e, w.old), "a refused repair changed the binlog")
	ro, err := readOnly(w.old)
	require.NoError(t, err)
	assert.True(t, ro)
	ids, err := tableIDs(w.e, w.old)
	require.NoError(t, err)
	for _, id := range w.errantIDs {
		assert.True(t, ids[id], "errant id %d was discarded by a refused repair", id)
	}
	stored, err := w.e.Store.Repair(context.Background(), hatest.DC, hatest.Cluster, w.old.Name())
	require.NoError(t, err)
	assert.Equal(t, state.RepairRefused, stored.State)

	// Repair off refuses too, saying so.
	res, err = w.repairer(t, repair.ModeOff).Repair(context.Background(), w.job(t))
	require.NoError(t, err)
	require.Equal(t, repair.Refused, res.Outcome)
	assert.Contains(t, res.Record.Reason, "repair is off")
}

// TestRefuseMultiEventStatement: an errant INSERT … ON DUPLICATE KEY
// UPDATE that both updates and inserts is logged as several rows events,
// which mariadb-binlog --flashback undoes wrongly: the repair refuses and
// leaves the instance untouched.
func TestRefuseMultiEventStatement(t *testing.T) {
	w := depose(t, 1, 0, "INSERT INTO "+hatest.Table+" (id) VALUES (1), (200), (2), (201) ON DUPLICATE KEY UPDATE at = NOW(6)")
	res, err := w.repairer(t, repair.ModeAuto).Repair(context.Background(), w.job(t))
	require.NoError(t, err)
	require.Equal(t, repair.Refused, res.Outcome)
	assert.Contains(t, res.Record.Reason, "several rows events")
	assert.Equal(t, w.oldBinlog, binlogState(t, w.e, w.old), "a refused repair changed the binlog")
	ids, err := tableIDs(w.e, w.old)
	require.NoError(t, err)
	assert.True(t, ids[200] && ids[201], "the errant rows were discarded by a refused repair")
}

// TestRejoinCleanDeposedMaster: a deposed master with nothing errant is
// rejoined at once (current_pos), even with repair off.
func TestRejoinCleanDeposedMaster(t *testing.T) {
	w := depose(t, 0, 0)
	res, err := w.repairer(t, repair.ModeOff).Repair(context.Background(), w.job(t))
	require.NoError(t, err)
	require.Equal(t, repair.Rejoined, res.Outcome)
	check.For(t, 20*time.Second, check.Every, func() error {
		if !replicatesFrom(w.old, w.cand.Addr()) {
			return fmt.Errorf("db1 does not replicate from %s", w.cand.Addr())
		}
		ids, err := tableIDs(w.e, w.old)
		if err != nil {
			return err
		}
		return check.That(len(ids) == len(w.ackedIDs), "db1 has %d rows, want %d", len(ids), len(w.ackedIDs))
	})
}

func binlogState(t *testing.T, e *hatest.Env, in *mysqld.Instance) string {
	var s string
	require.NoError(t, e.DB.AdminDB(in).QueryRow("SELECT @@gtid_binlog_state").Scan(&s))
	return s
}

func tableIDs(e *hatest.Env, in *mysqld.Instance) (map[int64]bool, error) {
	rows, err := e.DB.AdminDB(in).Query("SELECT id FROM " + e.DB.Database + "." + hatest.Table)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	ids := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

func replicatesFrom(in *mysqld.Instance, master string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	db, err := in.Admin(ctx)
	if err != nil {
		return false
	}
	rs, err := mysqld.ReadReplicaStatus(ctx, db)
	return err == nil && rs.Healthy() && net.JoinHostPort(rs.MasterHost, strconv.Itoa(rs.MasterPort)) == master
}

func readOnly(in *mysqld.Instance) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	db, err := in.Admin(ctx)
	if err != nil {
		return false, err
	}
	g, err := mysqld.ReadGTIDState(ctx, db)
	return g.ReadOnly, err
}
