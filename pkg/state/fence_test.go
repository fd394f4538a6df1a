package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
)

// candidate returns an election on name in a fresh session of its own.
func candidate(t *testing.T, st *state.Store, name string) (*concurrency.Election, *concurrency.Session) {
	t.Helper()
	sess, err := concurrency.NewSession(st.Client(), concurrency.WithTTL(30))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close() })
	return concurrency.NewElection(sess, st.Key("elections", name)), sess
}

func fenceOf(e *concurrency.Election) *state.Fence {
	return &state.Fence{Key: e.Key(), Rev: e.Rev()}
}

func masterRec(instance string, term int64) state.MasterRecord {
	return state.MasterRecord{
		DC: "dc-a1", Cluster: "main", Instance: instance, Addr: "127.0.0.1:3306", Term: term,
		UpdatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Reason: "test",
	}
}

func TestPutMasterFencedByElection(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)

	e1, _ := candidate(t, st, "dc-a1-main")
	require.NoError(t, e1.Campaign(ctx, "agent-1"))
	f1 := fenceOf(e1)

	rev, err := st.PutMaster(ctx, masterRec("a1-db1", 1), 0, f1)
	require.NoError(t, err)
	got, gotRev, err := st.Master(ctx, "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, rev, gotRev)
	assert.Equal(t, "a1-db1", got.Instance)
	assert.Equal(t, e1.Rev(), got.FencingRevision, "the record carries the token it was written under")

	// The holder with a stale read revision gets a conflict, not a fence error.
	_, err = st.PutMaster(ctx, masterRec("a1-db2", 2), 0, f1)
	require.ErrorIs(t, err, state.ErrConflict)
	require.NotErrorIs(t, err, state.ErrFenced)

	require.NoError(t, e1.Resign(ctx))

	// After resigning, the old token no longer holds, even with the right revision.
	_, err = st.PutMaster(ctx, masterRec("a1-db2", 2), rev, f1)
	require.ErrorIs(t, err, state.ErrFenced)
	got, gotRev, err = st.Master(ctx, "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, rev, gotRev, "a fenced write changes nothing")
	assert.Equal(t, "a1-db1", got.Instance)

	// Campaigning again yields a new token; the new holder writes.
	require.NoError(t, e1.Campaign(ctx, "agent-1"))
	f1b := fenceOf(e1)
	require.NotEqual(t, f1.Rev, f1b.Rev)
	_, err = st.PutMaster(ctx, masterRec("a1-db2", 2), rev, f1b)
	require.NoError(t, err)
}

func TestPutMasterFencedWhenAnotherCandidateWins(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)

	e1, s1 := candidate(t, st, "dc-a1-main")
	require.NoError(t, e1.Campaign(ctx, "agent-1"))
	f1 := fenceOf(e1)
	rev, err := st.PutMaster(ctx, masterRec("a1-db1", 1), 0, f1)
	require.NoError(t, err)

	e2, _ := candidate(t, st, "dc-a1-main")
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "agent-2") }()

	// agent-2's candidacy is registered, and it waits while agent-1 holds
	// the election.
	prefix := st.Key("elections", "dc-a1-main") + "/"
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		r, err := st.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		return check.That(r.Count == 2, "r.Count = %v, want 2", r.Count)
	})
	select {
	case err := <-won:
		t.Fatalf("second candidate won while the first still held the election (err %v)", err)
	default:
	}
	leader, err := e2.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "agent-1", string(leader.Kvs[0].Value))

	// agent-1's process dies: its session (lease) ends and agent-2 takes over.
	require.NoError(t, s1.Close())
	select {
	case err := <-won:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("second candidate never won the election")
	}
	leader, err = e2.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "agent-2", string(leader.Kvs[0].Value))

	// The deposed holder is fenced out even though it read the latest revision.
	_, err = st.PutMaster(ctx, masterRec("a1-db3", 2), rev, f1)
	require.ErrorIs(t, err, state.ErrFenced)
	require.Contains(t, err.Error(), f1.Key)

	f2 := fenceOf(e2)
	rev2, err := st.PutMaster(ctx, masterRec("a1-db2", 2), rev, f2)
	require.NoError(t, err)
	got, gotRev, err := st.Master(ctx, "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, rev2, gotRev)
	assert.Equal(t, "a1-db2", got.Instance)
	assert.Equal(t, int64(2), got.Term)
	assert.Equal(t, f2.Rev, got.FencingRevision)

	masters, err := st.Masters(ctx, "dc-a1")
	require.NoError(t, err)
	require.Equal(t, []state.MasterRecord{got}, masters)
	none, err := st.Masters(ctx, "dc-b1")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestPutMasterWithoutFence(t *testing.T) {
	st := newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	rec := masterRec("a1-db1", 1)
	rec.FencingRevision = 77
	_, err := st.PutMaster(ctx, rec, -1, nil)
	require.NoError(t, err)
	got, _, err := st.Master(ctx, "dc-a1", "main")
	require.NoError(t, err)
	assert.Equal(t, int64(77), got.FencingRevision, "without a fence the caller's value is kept")
}
