package ops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

func TestLeaderAppliesMutations(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	before := seed(t, st)
	n := startNode(t, st, "coord-1", nodeOpts{})
	ctx := t.Context()

	s0, _ := before.Shard(0)
	require.Equal(t, "dc-a1", s0.Owner)
	op, err := n.q.Submit(ctx, ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: 0, Owner: "dc-b1", Reason: "test"}, "ops-admin")
	require.NoError(t, err)
	assert.Equal(t, ops.Done, op.State)
	assert.Equal(t, "coord-1", op.Leader)
	require.NotNil(t, op.Result)
	assert.True(t, op.Result.Changed)

	after := loadMap(t, st)
	assert.Equal(t, op.Revision, after.Revision, "the map and the op record change in one transaction")
	s0, _ = after.Shard(0)
	assert.Equal(t, "dc-b1", s0.Owner)
	assert.Equal(t, "dc-a1", s0.Backup, "the old owner becomes the backup when the backup is the new owner")
	assert.Equal(t, op.Revision, s0.Revision)
	s1a, _ := before.Shard(1)
	s1b, _ := after.Shard(1)
	assert.Equal(t, s1a, s1b, "other shards keep their revisions")

	// Freeze it; setting the same state again changes nothing but is DONE.
	op, err = n.q.Submit(ctx, ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 0, ShardState: shardmap.Frozen}, "ops-admin")
	require.NoError(t, err)
	assert.True(t, op.Result.Changed)
	rev := loadMap(t, st).Revision
	op, err = n.q.Submit(ctx, ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 0, ShardState: shardmap.Frozen}, "ops-admin")
	require.NoError(t, err)
	assert.False(t, op.Result.Changed)
	assert.Equal(t, rev, loadMap(t, st).Revision)

	// DC state.
	_, err = n.q.Submit(ctx, ops.KindSetDCState, ops.Params{DC: "dc-a2", DCState: topology.DCDraining}, "ops-admin")
	require.NoError(t, err)
	topo, _, err := st.Topology(ctx)
	require.NoError(t, err)
	dc, _ := topo.DC("dc-a2")
	assert.Equal(t, topology.DCDraining, dc.StateOf())

	// Kill switches.
	ks := state.KillSwitch{Scope: "dc/dc-a1", Reason: "disk swap", SetBy: "ops-admin", SetAt: time.Now().UTC()}
	_, err = n.q.Submit(ctx, ops.KindSetKillSwitch, ops.Params{KillSwitch: &ks}, "ops-admin")
	require.NoError(t, err)
	sws, err := st.KillSwitches(ctx)
	require.NoError(t, err)
	require.Len(t, sws, 1)
	assert.Equal(t, "disk swap", sws[0].Reason)
	op, err = n.q.Submit(ctx, ops.KindClearKillSwitch, ops.Params{DC: "dc-a1"}, "ops-admin")
	require.NoError(t, err)
	assert.True(t, op.Result.Cleared)
	assert.Equal(t, "disk swap", op.Result.KillSwitch.Reason)
	op, err = n.q.Submit(ctx, ops.KindClearKillSwitch, ops.Params{DC: "dc-a1"}, "ops-admin")
	require.NoError(t, err)
	assert.False(t, op.Result.Cleared)

	// Every operation is audited once, by the leader, with the requester.
	evs := events(t, st)
	var actions []string
	for _, e := range evs {
		require.NoError(t, e.Validate())
		assert.Equal(t, "token:ops-admin", e.Actor)
		assert.Equal(t, audit.OutcomeOK, e.Outcome)
		actions = append(actions, e.Action)
	}
	assert.Equal(t, []string{ops.ActionShardMove, ops.ActionShardSetState, ops.ActionShardSetState, ops.ActionDCSetState,
		ops.ActionKillSwitchSet, ops.ActionKillSwitchClear, ops.ActionKillSwitchClear}, actions)
	assert.Equal(t, "orders/0", evs[0].Target)
	assert.Equal(t, "dc-b1", evs[0].Params["owner"])
	assert.Equal(t, "dc-a1", evs[0].Params["backup"])
	assert.Equal(t, "test", evs[0].Params["reason"])
	assert.NotEmpty(t, evs[0].Params[ops.MetaOperationID])
	assert.Equal(t, "true", evs[5].Params["cleared"])

	// The history is kept.
	all, _, err := n.q.List(ctx)
	require.NoError(t, err)
	require.Len(t, all, 7)
	for _, o := range all {
		assert.Equal(t, ops.Done, o.State)
	}
}

func TestInvalidOperationFailsAndKeepsTheMap(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	before := seed(t, st)
	n := startNode(t, st, "coord-1", nodeOpts{})

	tests := []struct {
		name   string
		kind   ops.Kind
		params ops.Params
		code   drplanev1.ErrorCode
		field  string
	}{
		{"unknown owner", ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: 1, Owner: "dc-zz"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ops.FieldOwner},
		{"backup is owner", ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: 1, Owner: "dc-b1", Backup: "dc-b1"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ops.FieldBackup},
		{"unknown backup", ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: 1, Owner: "dc-b1", Backup: "dc-zz"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ops.FieldBackup},
		{"unknown shard", ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 99, ShardState: shardmap.Frozen},
			drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, ops.FieldShard},
		{"bad shard state", ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 1, ShardState: "MELTED"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ops.FieldState},
		{"unknown keyspace", ops.KindSetShardState, ops.Params{Keyspace: "carts", Shard: 1, ShardState: shardmap.Frozen},
			drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, ops.FieldKeyspace},
		{"unknown dc", ops.KindSetDCState, ops.Params{DC: "dc-zz", DCState: topology.DCDown},
			drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, ops.FieldDC},
		{"unknown kind", ops.Kind("reshard"), ops.Params{Keyspace: "orders"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := n.q.Submit(t.Context(), tt.kind, tt.params, "ops-admin")
			require.Error(t, err)
			assert.Equal(t, ops.Failed, op.State)
			e, ok := apierr.FromError(err)
			require.True(t, ok)
			assert.Equal(t, tt.code, e.Code, "%v", err)
			assert.Equal(t, tt.field, e.Field)
			assert.Equal(t, op.ID, e.Metadata[ops.MetaOperationID])
			assert.NotEmpty(t, e.Message)
		})
	}
	after := loadMap(t, st)
	assert.Equal(t, before.Revision, after.Revision, "a rejected operation leaves the map as it was")
	assert.Equal(t, before.Shards, after.Shards)
	for _, e := range events(t, st) {
		assert.Equal(t, audit.OutcomeFailed, e.Outcome)
		assert.NotEmpty(t, e.Error)
	}
	assert.Len(t, events(t, st), len(tests))
}

func TestQueuedWithoutLeaderStaysQueued(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	before := seed(t, st)
	q := idleQueue(t, st, 200*time.Millisecond)

	op, err := q.Submit(t.Context(), ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 3, ShardState: shardmap.Frozen}, "ops-admin")
	e, ok := apierr.FromError(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, e.Code)
	assert.Equal(t, op.ID, e.Metadata[ops.MetaOperationID])
	assert.Contains(t, e.Message, "stays queued")
	assert.Equal(t, ops.Pending, op.State)
	assert.Equal(t, before.Revision, loadMap(t, st).Revision)

	// A caller whose deadline is nearer than the wait timeout gets the
	// answer before its deadline.
	q = idleQueue(t, st, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	op2, err := q.Submit(ctx, ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 4, ShardState: shardmap.Frozen}, "ops-admin")
	assert.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE), "%v", err)
	require.NoError(t, ctx.Err())

	// A leader that comes later applies both.
	n := startNode(t, st, "coord-1", nodeOpts{})
	for _, o := range []ops.Op{op, op2} {
		got, err := n.q.Wait(t.Context(), o)
		require.NoError(t, err)
		assert.Equal(t, ops.Done, got.State)
	}
	m := loadMap(t, st)
	for _, id := range []int{3, 4} {
		s, _ := m.Shard(id)
		assert.Equal(t, shardmap.Frozen, s.State)
	}
}

// TestLeaderLossAppliesEachOperationOnce queues operations from several
// writers while the leader's etcd session is revoked twice, with two
// candidates: every operation ends DONE exactly once (one audit event each,
// written in the same transaction), in queue order, and the map is whole.
//
// It cannot flake under load: the condition is created, not hoped for.
// Each revocation waits until the term that leads has applied an operation,
// revokes exactly that term's lease (confirmed by etcd) and waits for a
// later term, so the next revocation cannot hit a term that already ended;
// and writer 0 still queues operations after the second one. So at least
// three terms apply operations, whatever the timing: the two revoked ones
// and one after them. A session lost by itself (a missed keep-alive on a
// slow machine) only adds terms.
func TestLeaderLossAppliesEachOperationOnce(t *testing.T) {
	cli := harness.EtcdClient(t)
	st := state.New(cli, "")
	seed(t, st)
	q := idleQueue(t, st, time.Minute)
	a := startNode(t, st, "coord-a", nodeOpts{})
	b := startNode(t, st, "coord-b", nodeOpts{})

	const writers, perWriter = 4, 5
	dcs := []string{"dc-a1", "dc-a2", "dc-b1"}
	var (
		mu      sync.Mutex
		queued  []ops.Op
		revoked []int64 // fences of the revoked terms, in order
	)
	// leading returns the term of the candidate that leads now, skipping
	// terms revoked already that a candidate has not noticed yet.
	leading := func() (leader.Term, error) {
		for _, n := range []*node{a, b} {
			if term, ok := n.l.Current(); ok && !slices.Contains(revoked, term.Fence.Rev) {
				return term, nil
			}
		}
		return leader.Term{}, errors.New("no candidate leads in a term not revoked yet")
	}
	// revoke waits for the leading term to apply an operation, then
	// revokes its session and waits until a later term leads.
	revoke := func() {
		var term leader.Term
		check.For(t, waitFor, 5*time.Millisecond, func() error {
			var err error
			if term, err = leading(); err != nil {
				return err
			}
			all, _, err := q.List(t.Context())
			if err != nil {
				return err
			}
			for _, o := range all {
				if o.Fence == term.Fence.Rev && o.State == ops.Done {
					return nil
				}
			}
			return fmt.Errorf("term %d applied nothing yet", term.Fence.Rev)
		})
		resp, err := cli.Get(t.Context(), term.Fence.Key)
		require.NoError(t, err)
		if len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == term.Fence.Rev {
			_, err = cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
			require.NoError(t, err, "revoke the session of term %d", term.Fence.Rev)
		} // else the term ended by itself meanwhile: as good as revoked.
		revoked = append(revoked, term.Fence.Rev)
		check.For(t, waitFor, 5*time.Millisecond, func() error { _, err := leading(); return err })
	}
	// queue runs the writers of one phase; writer 0 calls mid after its
	// second operation.
	queue := func(phase int, mid func()) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					k := phase*writers*perWriter + w*perWriter + i
					op, err := q.Enqueue(t.Context(), ops.KindMoveShard, ops.Params{Keyspace: "orders", Shard: k % 8,
						Owner: dcs[k%len(dcs)], Backup: dcs[(k+1)%len(dcs)]}, fmt.Sprintf("writer-%d", w))
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					queued = append(queued, op)
					mu.Unlock()
					if w == 0 && i == 1 && mid != nil {
						mid()
					}
				}
			}()
		}
		wg.Wait()
	}
	// Phase 0 is queued while the leader applies; its session is revoked
	// once it applied one, with operations possibly still being applied.
	// The next term loses its session in the middle of phase 1 too, once
	// it applied one; writer 0's last operations of phase 1 are queued
	// after that.
	queue(0, nil)
	revoke()
	queue(1, revoke)
	require.Len(t, queued, 2*writers*perWriter)

	// Every operation finishes.
	var all []ops.Op
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		var err error
		all, _, err = q.List(t.Context())
		if err != nil {
			return err
		}
		if len(all) != len(queued) {
			return fmt.Errorf("%d operations listed, want %d", len(all), len(queued))
		}
		for _, o := range all {
			if !o.Finished() {
				return fmt.Errorf("operation %s not finished", o.ID)
			}
		}
		return nil
	})

	// Exactly once: one audit event per operation; applied in queue order.
	perOp := map[string]int{}
	for _, e := range events(t, st) {
		perOp[e.Params[ops.MetaOperationID]]++
	}
	var last int64
	leaders := map[string]bool{}
	want := map[int]ops.Params{}
	for _, o := range all {
		assert.Equal(t, ops.Done, o.State, "%s: %s %s", o.ID, o.Code, o.Error)
		assert.Equal(t, 1, perOp[o.ID], "operation %s audited %d times", o.ID, perOp[o.ID])
		assert.Greater(t, o.Revision, last, "operations are applied oldest first")
		last = o.Revision
		leaders[fmt.Sprintf("%s@%d", o.Leader, o.Fence)] = true
		want[o.Params.Shard] = o.Params
	}
	t.Logf("applied by %d terms: %v; revoked: %v", len(leaders), leaders, revoked)
	assert.GreaterOrEqual(t, len(leaders), 3, "the two revoked terms and a later one applied operations")
	require.Len(t, revoked, 2)
	for _, o := range all[len(all)-3:] {
		assert.NotContains(t, revoked, o.Fence, "operation %s was queued after both revocations", o.ID)
	}

	// The map is whole and is what the last operation per shard asked for.
	m := loadMap(t, st)
	topo, _, err := st.Topology(t.Context())
	require.NoError(t, err)
	require.NoError(t, m.Validate(topo))
	for id, p := range want {
		s, _ := m.Shard(id)
		assert.Equal(t, p.Owner, s.Owner, "shard %d", id)
		assert.Equal(t, p.Backup, s.Backup, "shard %d", id)
	}
}

func TestPruneKeepsRecentHistory(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	seed(t, st)
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	n := startNode(t, st, "coord-1", nodeOpts{now: clock, prune: 20 * time.Millisecond, retention: time.Hour})
	old, err := n.q.Submit(t.Context(), ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 2, ShardState: shardmap.Moving}, "ops-admin")
	require.NoError(t, err)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	recent, err := n.q.Submit(t.Context(), ops.KindSetShardState, ops.Params{Keyspace: "orders", Shard: 2, ShardState: shardmap.Active}, "ops-admin")
	require.NoError(t, err)

	check.For(t, waitFor, 10*time.Millisecond, func() error {
		_, err := n.q.Get(t.Context(), old.ID)
		return check.That(err != nil, "an operation finished before the retention is deleted")
	})
	got, err := n.q.Get(t.Context(), recent.ID)
	require.NoError(t, err)
	assert.Equal(t, ops.Done, got.State)
}
