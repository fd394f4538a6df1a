package shardmap_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
)

const opTimeout = 10 * time.Second

func opCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestStore runs the etcd tests against one embedded etcd, each subtest
// under a root of its own.
func TestStore(t *testing.T) {
	cli := harness.EtcdClient(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *state.Store)
	}{
		{"save and load", testSaveLoad},
		{"compare and swap", testCompareAndSwap},
		{"invalid map rejected, old kept", testInvalidRejected},
		{"fenced by the leader's election", testFence},
		{"load checks the keyspace", testLoadChecksKeyspace},
		{"watch", testWatch},
		{"watch before the first save", testWatchFromNothing},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, state.New(cli, "/test/"+t.Name())) })
	}
}

func testSaveLoad(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	_, err := shardmap.Load(ctx, st, "orders")
	require.ErrorIs(t, err, state.ErrNotFound)

	m, topo := labMap(t, 64)
	rev, err := shardmap.Save(ctx, st, m, 0, nil, topo)
	require.NoError(t, err)
	require.Positive(t, rev)

	got, err := shardmap.Load(ctx, st, "orders")
	require.NoError(t, err)
	assert.Equal(t, rev, got.Revision, "the map's revision is the key's mod revision")
	require.Len(t, got.Shards, 64)
	for i, s := range got.Shards {
		assert.Equal(t, rev, s.Revision, "a new shard gets the revision of the write that stored it")
		want := m.Shards[i]
		want.Revision = rev
		assert.Equal(t, want, s)
	}
	require.NoError(t, got.Validate(topo))

	// Change one shard: only it gets the new revision.
	frozen, err := shardmap.SetShardState(got, 5, shardmap.Frozen)
	require.NoError(t, err)
	rev2, err := shardmap.Save(ctx, st, frozen, got.Revision, nil, topo)
	require.NoError(t, err)
	got2, err := shardmap.Load(ctx, st, "orders")
	require.NoError(t, err)
	assert.Equal(t, rev2, got2.Revision)
	assert.Equal(t, rev2, got2.Shards[5].Revision)
	assert.Equal(t, shardmap.Frozen, got2.Shards[5].State)
	assert.Equal(t, rev, got2.Shards[4].Revision, "unchanged shards keep the revision of their last change")

	// The stored JSON carries bounds as strings.
	resp, err := st.Client().Get(ctx, shardmap.Key(st, "orders"))
	require.NoError(t, err)
	assert.Contains(t, string(resp.Kvs[0].Value), `"lo":"288230376151711744","hi":"576460752303423488"`)
}

func testCompareAndSwap(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	m, topo := labMap(t, 8)
	rev1, err := shardmap.Save(ctx, st, m, 0, nil, topo)
	require.NoError(t, err)

	_, err = shardmap.Save(ctx, st, m, 0, nil, topo)
	require.ErrorIs(t, err, state.ErrConflict, "prevRev 0 requires that no map exists")

	moved, err := shardmap.MoveShard(m, 1, "dc-b1", "dc-a1")
	require.NoError(t, err)
	rev2, err := shardmap.Save(ctx, st, moved, rev1, nil, topo)
	require.NoError(t, err)

	// A writer that read rev1 loses.
	stale, err := shardmap.SetShardState(m, 2, shardmap.Moving)
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, stale, rev1, nil, topo)
	require.ErrorIs(t, err, state.ErrConflict)

	got, err := shardmap.Load(ctx, st, "orders")
	require.NoError(t, err)
	assert.Equal(t, rev2, got.Revision)
	assert.Equal(t, "dc-b1", got.Shards[1].Owner)
	assert.Equal(t, shardmap.Active, got.Shards[2].State, "the losing write left no trace")
}

func testInvalidRejected(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	m, topo := labMap(t, 8)
	rev, err := shardmap.Save(ctx, st, m, 0, nil, topo)
	require.NoError(t, err)

	bad := m.Clone()
	bad.Shards[3].Hi -= 1 // a gap before shard 4
	_, err = shardmap.Save(ctx, st, bad, rev, nil, topo)
	require.ErrorIs(t, err, shardmap.ErrInvalid)

	unknown, err := shardmap.MoveShard(m, 0, "dc-nowhere", "dc-b1")
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, unknown, rev, nil, topo)
	require.ErrorIs(t, err, shardmap.ErrInvalid)

	got, err := shardmap.Load(ctx, st, "orders")
	require.NoError(t, err)
	assert.Equal(t, rev, got.Revision, "nothing was written")
	assert.Equal(t, m.Shards[3].Hi, got.Shards[3].Hi)
	assert.Equal(t, m.Shards[0].Owner, got.Shards[0].Owner)
}

func testFence(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	sess, err := concurrency.NewSession(st.Client(), concurrency.WithTTL(30))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close() })
	e := concurrency.NewElection(sess, st.Key("elections", "coordinator"))
	require.NoError(t, e.Campaign(ctx, "coordinator-1"))
	fence := &state.Fence{Key: e.Key(), Rev: e.Rev()}

	m, topo := labMap(t, 8)
	rev, err := shardmap.Save(ctx, st, m, 0, fence, topo)
	require.NoError(t, err, "the leader writes under its fence")

	require.NoError(t, e.Resign(ctx))
	frozen, err := shardmap.SetShardState(m, 0, shardmap.Frozen)
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, frozen, rev, fence, topo)
	require.ErrorIs(t, err, state.ErrFenced, "a deposed leader cannot write")

	got, err := shardmap.Load(ctx, st, "orders")
	require.NoError(t, err)
	assert.Equal(t, rev, got.Revision)
	assert.Equal(t, shardmap.Active, got.Shards[0].State)
}

func testLoadChecksKeyspace(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	_, err := shardmap.Load(ctx, st, "../topology")
	require.ErrorIs(t, err, shardmap.ErrInvalid, "a keyspace name cannot reach another key")
	_, err = shardmap.Watch(ctx, st, "a/b")
	require.ErrorIs(t, err, shardmap.ErrInvalid)

	m, _ := labMap(t, 2)
	m.Keyspace = "payments"
	_, err = state.Put(ctx, st, shardmap.Key(st, "orders"), m, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)
	_, err = shardmap.Load(ctx, st, "orders")
	require.ErrorIs(t, err, shardmap.ErrInvalid, "a map stored under the wrong keyspace is refused")
}

// next receives from ch within the operation timeout.
func next(t *testing.T, ch <-chan shardmap.Map) shardmap.Map {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "watch closed")
		return m
	case <-time.After(opTimeout):
		t.Fatal("no map from the watch")
	}
	return shardmap.Map{}
}

func testWatch(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	m, topo := labMap(t, 8)
	rev1, err := shardmap.Save(ctx, st, m, 0, nil, topo)
	require.NoError(t, err)

	wctx, cancel := context.WithCancel(ctx)
	ch, err := shardmap.Watch(wctx, st, "orders")
	require.NoError(t, err)
	first := next(t, ch)
	assert.Equal(t, rev1, first.Revision, "the current map comes first")
	assert.Equal(t, rev1, first.Shards[0].Revision)

	frozen, err := shardmap.SetShardState(first, 6, shardmap.Frozen)
	require.NoError(t, err)
	rev2, err := shardmap.Save(ctx, st, frozen, rev1, nil, topo)
	require.NoError(t, err)
	second := next(t, ch)
	assert.Equal(t, rev2, second.Revision)
	assert.Equal(t, shardmap.Frozen, second.Shards[6].State)
	assert.Equal(t, rev2, second.Shards[6].Revision)
	assert.Equal(t, rev1, second.Shards[0].Revision)

	// A reader that does not keep up gets the latest version, not a backlog.
	cur, last := second, rev2
	for i := range 5 {
		moved, err := shardmap.MoveShard(cur, i, "dc-b1", "dc-a2")
		require.NoError(t, err)
		last, err = shardmap.Save(ctx, st, moved, cur.Revision, nil, topo)
		require.NoError(t, err)
		cur = moved
		cur.Revision = last
	}
	seen := 0
	for got := next(t, ch); ; got = next(t, ch) {
		seen++
		if got.Revision == last {
			for i := range 5 {
				assert.Equal(t, "dc-b1", got.Shards[i].Owner)
			}
			break
		}
		require.Less(t, got.Revision, last)
	}
	assert.LessOrEqual(t, seen, 5, "at most one map per write")

	cancel()
	check.For(t, opTimeout, 10*time.Millisecond, func() error {
		select {
		case _, ok := <-ch:
			return check.That(!ok, "the channel closes when the context ends")
		default:
			return check.That(false, "the channel closes when the context ends")
		}
	})
}

func testWatchFromNothing(t *testing.T, st *state.Store) {
	ctx := opCtx(t)
	ch, err := shardmap.Watch(ctx, st, "orders")
	require.NoError(t, err)
	m, topo := labMap(t, 4)
	rev, err := shardmap.Save(ctx, st, m, 0, nil, topo)
	require.NoError(t, err)
	got := next(t, ch)
	assert.Equal(t, rev, got.Revision)
	assert.Len(t, got.Shards, 4)
}
