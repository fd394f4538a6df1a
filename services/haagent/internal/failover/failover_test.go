package failover_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// lead wins an election and returns its fencing token.
func lead(t *testing.T, e *hatest.Env) state.Fence {
	t.Helper()
	s, err := concurrency.NewSession(e.Cli, concurrency.WithTTL(5))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	el := concurrency.NewElection(s, e.Store.Key("agents", hatest.DC, "election"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, el.Campaign(ctx, "test"))
	return state.Fence{Key: el.Key(), Rev: el.Rev()}
}

func runner(t *testing.T, e *hatest.Env, hooks failover.Hooks) *failover.Runner {
	t.Helper()
	u := e.DB.Users
	ops := failover.NewOps(failover.Creds{User: u.AdminUser, Password: u.AdminPassword,
		ReplUser: u.ReplUser, ReplPassword: u.ReplPassword}, 60*time.Second, 2*time.Second)
	t.Cleanup(ops.Close)
	return failover.NewRunner(failover.Options{DC: hatest.DC, AgentID: "test-agent", Ops: ops, Store: e.Store,
		Audit: audit.NewOutbox(e.Store), Hooks: hooks, Logger: zerolog.New(zerolog.NewTestWriter(t))})
}

func replicating(t *testing.T, e *hatest.Env, in *mysqld.Instance, master string) bool {
	db := e.DB.AdminDB(in)
	rs, err := mysqld.ReadReplicaStatus(context.Background(), db)
	return err == nil && rs.Healthy() && net.JoinHostPort(rs.MasterHost, strconv.Itoa(rs.MasterPort)) == master
}

// TestFailoverAfterKill: the master is killed under writes; the runner
// promotes a replica, repoints the other, and every acknowledged write is
// on the new master. The old master, restarted, rejoins as a replica.
func TestFailoverAfterKill(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	fence := lead(t, e)
	r := runner(t, e, failover.Hooks{})
	w := e.StartWriter()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "some acknowledged writes") })

	old := e.DB.Master
	require.NoError(t, old.Kill())
	killedAt := time.Now()
	rec, rev := e.Master()
	rec2, err := r.Failover(context.Background(), fence, failover.Plan{
		Cluster: e.TopoCluster(), Master: rec, MasterRev: rev, Analysis: "DeadMaster",
		DetectedAt: killedAt, Candidates: []string{e.DB.Replicas[0].Name(), e.DB.Replicas[1].Name()},
	})
	require.NoError(t, err)
	assert.Equal(t, state.OutcomeSucceeded, rec2.Outcome)
	assert.Positive(t, rec2.RTO)
	t.Logf("failover: RTO %s (kill → writable), steps %d", time.Duration(rec2.RTO), len(rec2.Steps))

	newRec, _ := e.Master()
	assert.Equal(t, rec2.NewMaster, newRec.Instance)
	assert.Equal(t, rec.Term+1, newRec.Term)
	assert.Equal(t, fence.Rev, newRec.FencingRevision)
	first := w.FirstOKAfter(killedAt)
	check.For(t, 10*time.Second, check.Every, func() error {
		first = w.FirstOKAfter(killedAt)
		return check.That(!first.IsZero(), "a write acknowledged by the new master")
	})
	t.Logf("kill → first acknowledged write on the new master: %s", first.Sub(killedAt))
	acked, _ := w.Stop()
	missing, err := e.MissingAcked(newRec.Addr, acked)
	require.NoError(t, err)
	assert.Empty(t, missing, "acknowledged writes lost")

	other := e.DB.Replicas[0]
	if other.Name() == newRec.Instance {
		other = e.DB.Replicas[1]
	}
	check.For(t, 10*time.Second, check.Every, func() error {
		return check.That(replicating(t, e, other, newRec.Addr), "the other replica replicating from the new master")
	})

	// The old master restarts read-only and rejoins with current_pos.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, old.Start(ctx))
	require.NoError(t, r.Ops().Replicate(ctx, old.Addr(), newRec.Addr, mysqld.CurrentPos))
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(replicating(t, e, old, newRec.Addr), "the old master replicating") })
	missing, err = e.MissingAcked(old.Addr(), acked)
	require.NoError(t, err)
	check.For(t, 10*time.Second, check.Every, func() error {
		missing, err = e.MissingAcked(old.Addr(), acked)
		if err != nil {
			return err
		}
		return check.That(len(missing) == 0, "the old master caught up")
	})

	recs, err := e.Store.Failovers(context.Background(), hatest.DC, hatest.Cluster)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, state.OutcomeSucceeded, recs[0].Outcome)
	evs, err := audit.NewOutbox(e.Store).List(context.Background(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, "failover.automatic", evs[0].Action)
}

// TestSwitchoverUnderWrites: no acknowledged write is lost and the
// write-block window is reported.
func TestSwitchoverUnderWrites(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	fence := lead(t, e)
	r := runner(t, e, failover.Hooks{})
	w := e.StartWriter()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "some acknowledged writes") })
	rec, rev := e.Master()
	to := e.DB.Replicas[1].Name()
	out, err := r.Switchover(context.Background(), fence, failover.SwitchoverPlan{
		Cluster: e.TopoCluster(), Master: rec, MasterRev: rev, To: to,
		Intent: state.SwitchoverIntent{ID: "s1", RequestedBy: "tester", RequestedAt: time.Now()},
	})
	require.NoError(t, err)
	assert.Equal(t, state.OutcomeSucceeded, out.Outcome)
	assert.Positive(t, out.BlockWindow)
	assert.Equal(t, int64(0), out.RPOTransactions)
	t.Logf("switchover: block window %s, RTO %s", time.Duration(out.BlockWindow), time.Duration(out.RTO))
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(!w.FirstOKAfter(out.WritableAt).IsZero(), "writes on the new master") })
	acked, _ := w.Stop()
	newRec, _ := e.Master()
	require.Equal(t, to, newRec.Instance)
	missing, err := e.MissingAcked(newRec.Addr, acked)
	require.NoError(t, err)
	assert.Empty(t, missing)
	// The old master now replicates from the new one and is read-only.
	check.For(t, 10*time.Second, check.Every, func() error {
		return check.That(replicating(t, e, e.DB.Master, newRec.Addr), "the old master replicating")
	})
}

// TestPreFailoverHookAborts: a failing pre-failover hook leaves every
// instance as it was and records ABORTED; the placeholders reach the hook.
func TestPreFailoverHookAborts(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	fence := lead(t, e)
	out := filepath.Join(t.TempDir(), "hook.out")
	r := runner(t, e, failover.Hooks{
		PreFailover: [][]string{{"sh", "-c", `echo "$0 $1 $DRPLANE_HOOK" > ` + out + `; exit 3`, "{cluster}", "{old_master}"}},
		PostFailure: [][]string{{"sh", "-c", `echo failure >> ` + out}},
	})
	rec, rev := e.Master()
	got, err := r.Failover(context.Background(), fence, failover.Plan{
		Cluster: e.TopoCluster(), Master: rec, MasterRev: rev, Analysis: "DeadMaster", DetectedAt: time.Now(),
		Candidates: []string{e.DB.Replicas[0].Name()},
	})
	require.ErrorIs(t, err, failover.ErrAborted)
	assert.Equal(t, state.OutcomeAborted, got.Outcome)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "main "+rec.Instance+" pre_failover\nfailure\n", string(data))
	after, _ := e.Master()
	assert.Equal(t, rec.Instance, after.Instance)
	g, err := mysqld.ReadGTIDState(context.Background(), e.DB.AdminDB(e.DB.Master))
	require.NoError(t, err)
	assert.False(t, g.ReadOnly, "the master must stay writable")
}

// TestFailoverWithStaleFenceChangesNothing: a runner whose fence no longer
// holds cannot claim the cluster, and no instance changes.
func TestFailoverWithStaleFenceChangesNothing(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	fence := lead(t, e)
	fence.Rev++ // not the holder's revision
	r := runner(t, e, failover.Hooks{})
	rec, rev := e.Master()
	_, err := r.Failover(context.Background(), fence, failover.Plan{
		Cluster: e.TopoCluster(), Master: rec, MasterRev: rev, Analysis: "DeadMaster", DetectedAt: time.Now(),
		Candidates: []string{e.DB.Replicas[0].Name()},
	})
	require.ErrorIs(t, err, failover.ErrNotClaimed)
	require.ErrorIs(t, err, state.ErrFenced)
	st, err := mysqld.ReadReplicaStatus(context.Background(), e.DB.AdminDB(e.DB.Replicas[0]))
	require.NoError(t, err)
	assert.True(t, st.Healthy(), "the candidate must still replicate")
}
