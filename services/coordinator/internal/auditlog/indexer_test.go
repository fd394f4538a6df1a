package auditlog

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

// TestIndexerIndexesEveryWriter: events put in the outbox by two writers
// (one of them inside a transaction, as the operations queue does) become
// searchable in the index of each of two coordinators, with their fields.
func TestIndexerIndexesEveryWriter(t *testing.T) {
	cluster := harness.StartEtcd(t, 1)
	st := state.New(harness.EtcdClientFor(t, cluster), "")
	other := state.New(harness.EtcdClientFor(t, cluster), "")
	storeA, storeB := openStore(t, t.TempDir()), openStore(t, t.TempDir())

	// One event waits in the outbox before any indexer starts.
	now := time.Now().UTC()
	early := event(now.Add(-time.Minute), "coord-x", 1, "killswitch.set", "dc-a1")
	require.NoError(t, audit.NewOutbox(st).Put(t.Context(), early))

	a := startIndexer(t, Options{Store: st, Docs: storeA, ID: "coord-a"})
	startIndexer(t, Options{Store: other, Docs: storeB, ID: "coord-b"})
	waitIndexed(t, storeA, early.ID)

	agent := event(now, "haagent-a1", 7, "switchover.run", "dc-a1/main")
	agent.Actor, agent.RTOMillis, agent.RPOTransactions = "haagent:a1", 1500, -1
	agent.Params = map[string]string{"old_master": "dc-a1-db1", "new_master": "dc-a1-db2"}
	require.NoError(t, audit.NewOutbox(other).Put(t.Context(), agent))

	viaTxn := event(now.Add(time.Second), "coord-y/ops", 2, "shard.move", "orders/3")
	viaTxn.Outcome, viaTxn.Error = audit.OutcomeFailed, "FAILED_PRECONDITION: shard frozen"
	putOp, err := audit.NewOutbox(st).PutOp(viaTxn)
	require.NoError(t, err)
	_, err = st.Client().Txn(t.Context()).Then(putOp, clientv3.OpPut(st.Key("elsewhere"), "x")).Commit()
	require.NoError(t, err)

	for _, s := range []docstore.Store{storeA, storeB} {
		waitIndexed(t, s, early.ID, agent.ID, viaTxn.ID)
	}

	raw, err := storeA.Get(t.Context(), DefaultIndex, agent.ID)
	require.NoError(t, err)
	ev, err := apiEvent(raw)
	require.NoError(t, err)
	assert.Equal(t, "haagent:a1", ev.GetActor())
	assert.Equal(t, "switchover.run", ev.GetAction())
	assert.Equal(t, "dc-a1/main", ev.GetTarget())
	assert.Equal(t, map[string]string{"old_master": "dc-a1-db1", "new_master": "dc-a1-db2"}, ev.GetParams())
	assert.Equal(t, int64(1500), ev.GetRtoMs())
	assert.Equal(t, int64(-1), ev.GetRpoTransactions())
	assert.True(t, ev.GetTime().AsTime().Equal(agent.Time))

	// Bare words reach the parts of dotted actions and of parameters.
	assert.Equal(t, []string{agent.ID}, searchIDs(t, storeA, docstore.Query{Text: "switchover"}))
	assert.Equal(t, []string{agent.ID}, searchIDs(t, storeA, docstore.Query{Text: "params:db2"}))
	assert.Equal(t, []string{viaTxn.ID}, searchIDs(t, storeA, docstore.Query{Text: "frozen AND outcome:FAILED"}))

	check.For(t, waitFor, 10*time.Millisecond, func() error {
		return check.That(testutil.ToFloat64(a.ix.m.indexed) == 3, "testutil.ToFloat64(a.ix.m.indexed) = %v, want 3", testutil.ToFloat64(a.ix.m.indexed))
	})
	assert.Positive(t, testutil.ToFloat64(a.ix.m.checkpoint))
	lag, err := testutil.GatherAndCount(a.reg, "drplane_coordinator_audit_index_lag_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, lag)
}

// TestIndexerResumesFromCheckpoint: a restarted indexer (on the same data
// directory) resumes from its saved checkpoint instead of re-indexing the
// outbox, and indexes what was written while it was down.
func TestIndexerResumesFromCheckpoint(t *testing.T) {
	st := newEtcd(t)
	dir := t.TempDir()
	store := openStore(t, dir)
	out := audit.NewOutbox(st)
	now := time.Now().UTC()
	var want []string
	for i := range 3 {
		e := event(now.Add(time.Duration(i)*time.Millisecond), "w1", uint64(i), "switchover.request", "dc-a1/main")
		require.NoError(t, out.Put(t.Context(), e))
		want = append(want, e.ID)
	}
	first := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a"})
	waitIndexed(t, store, want...)
	first.stop()
	cp := first.ix.Checkpoint()
	require.Positive(t, cp)
	require.NoError(t, store.Close())

	// While it is down: two more events.
	for i := 3; i < 5; i++ {
		e := event(now.Add(time.Duration(i)*time.Millisecond), "w1", uint64(i), "switchover.request", "dc-a1/main")
		require.NoError(t, out.Put(t.Context(), e))
		want = append(want, e.ID)
	}

	store = openStore(t, dir)
	raw, err := store.Get(t.Context(), DefaultIndex+metaSuffix, "coord-a")
	require.NoError(t, err, "the checkpoint is a document of the meta index")
	var saved checkpoint
	require.NoError(t, json.Unmarshal(raw, &saved))
	assert.Equal(t, cp, saved.Revision)
	assert.NotEmpty(t, saved.ClusterID)

	second := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a"})
	waitIndexed(t, store, want...)
	check.For(t, waitFor, 10*time.Millisecond, func() error { return check.That(second.ix.Checkpoint() > cp, "second.ix.Checkpoint() > cp") })
	assert.Equal(t, 2.0, testutil.ToFloat64(second.ix.m.indexed), "only the events written after the checkpoint")
}

// TestIndexerDiscardsForeignCheckpoint: a checkpoint from another etcd
// cluster (or ahead of this one) would skip events; it is discarded.
func TestIndexerDiscardsForeignCheckpoint(t *testing.T) {
	st := newEtcd(t)
	store := openStore(t, t.TempDir())
	require.NoError(t, store.EnsureIndex(t.Context(), DefaultIndex+metaSuffix, metaMapping()))
	raw, err := json.Marshal(checkpoint{Coordinator: "coord-a", Revision: 1 << 40, ClusterID: "feed"})
	require.NoError(t, err)
	_, err = store.Bulk(t.Context(), DefaultIndex+metaSuffix, []docstore.Op{{ID: "coord-a", Doc: raw}})
	require.NoError(t, err)
	e := event(time.Now(), "w1", 1, "killswitch.clear", "global")
	require.NoError(t, audit.NewOutbox(st).Put(t.Context(), e))

	r := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a"})
	waitIndexed(t, store, e.ID)
	assert.Less(t, r.ix.Checkpoint(), int64(1<<40))
}

// TestIndexerSurvivesCompaction: etcd history compacted past the
// checkpoint neither loses events (the indexer lists again) nor stops the
// indexer; a watch from a compacted revision returns at once.
func TestIndexerSurvivesCompaction(t *testing.T) {
	st := newEtcd(t)
	dir := t.TempDir()
	store := openStore(t, dir)
	out := audit.NewOutbox(st)
	now := time.Now().UTC()
	e1 := event(now, "w1", 1, "switchover.request", "dc-a1/main")
	require.NoError(t, out.Put(t.Context(), e1))
	first := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a"})
	waitIndexed(t, store, e1.ID)
	first.stop()
	cp := first.ix.Checkpoint()

	// Written while the indexer is down, then the history is compacted:
	// the checkpoint's next revision is gone.
	e2 := event(now.Add(time.Millisecond), "w1", 2, "switchover.request", "dc-b1/main")
	require.NoError(t, out.Put(t.Context(), e2))
	for i := range 5 {
		_, err := st.Client().Put(t.Context(), st.Key("noise"), time.Now().String()+string(rune('a'+i)))
		require.NoError(t, err)
	}
	resp, err := st.Client().Get(t.Context(), st.Key("noise"))
	require.NoError(t, err)
	_, err = st.Client().Compact(t.Context(), resp.Header.Revision)
	require.NoError(t, err)

	// The watch step alone: from the compacted revision it returns without
	// error and without moving the checkpoint.
	ix, err := New(Options{Store: st, Docs: store, ID: "probe"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	got, err := ix.watch(ctx, checkpoint{Revision: cp})
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "watch returned because of the compaction, not the deadline")
	assert.Equal(t, cp, got.Revision)

	second := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a"})
	waitIndexed(t, store, e1.ID, e2.ID)
	e3 := event(now.Add(2*time.Millisecond), "w1", 3, "switchover.request", "dc-a2/main")
	require.NoError(t, out.Put(t.Context(), e3))
	waitIndexed(t, store, e1.ID, e2.ID, e3.ID)
	check.For(t, waitFor, 10*time.Millisecond, func() error {
		return check.That(second.ix.Checkpoint() > resp.Header.Revision, "the checkpoint moves past the compaction")
	})
}

// TestIndexerRetention: outbox entries older than the retention are
// deleted; newer ones stay.
func TestIndexerRetention(t *testing.T) {
	st := newEtcd(t)
	store := openStore(t, t.TempDir())
	out := audit.NewOutbox(st)
	now := time.Now().UTC()
	old1 := event(now.Add(-3*time.Hour), "w1", 1, "failover.automatic", "dc-a1/main")
	old2 := event(now.Add(-2*time.Hour), "w2", 1, "failover.automatic", "dc-b1/main")
	fresh := event(now.Add(-10*time.Minute), "w1", 2, "switchover.request", "dc-a1/main")
	for _, e := range []audit.Event{old1, old2, fresh} {
		require.NoError(t, out.Put(t.Context(), e))
	}
	r := startIndexer(t, Options{Store: st, Docs: store, ID: "coord-a", Retention: time.Hour, RetentionEvery: 20 * time.Millisecond})
	var left []audit.Event
	check.For(t, waitFor, 20*time.Millisecond, func() error {
		var err error
		left, err = out.List(t.Context(), 0)
		require.NoError(t, err)
		return check.That(len(left) == 1, "outbox: %+v", left)
	})
	assert.Equal(t, fresh.ID, left[0].ID)
	assert.Equal(t, 2.0, testutil.ToFloat64(r.ix.m.deleted))

	// Deleting again (another coordinator's turn) finds nothing to do.
	n, err := out.DeleteBefore(t.Context(), now.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n)
}
