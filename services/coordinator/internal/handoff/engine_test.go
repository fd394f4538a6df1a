package handoff_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
)

// world is etcd with the lab's topology and a 16-shard map, and a fencing
// token standing in for the leader's.
type world struct {
	st    *state.Store
	fence state.Fence
	topo  topology.Topology
}

func newWorld(t *testing.T) *world {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	ctx := t.Context()
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Keyspaces: []topology.Keyspace{{Name: "orders", Cluster: "main", Database: "shop", Table: "orders",
			ShardKey: "user_id", Shards: 16}},
	}
	for i, dc := range topo.DCs {
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: "127.0.0.1:" + strconv.Itoa(3306+i)}}})
	}
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, shardmap.New(topo.Keyspaces[0], topo), 0, nil, topo)
	require.NoError(t, err)
	resp, err := st.Client().Put(ctx, st.Key("leader-fence"), "me")
	require.NoError(t, err)
	return &world{st: st, topo: topo, fence: state.Fence{Key: st.Key("leader-fence"), Rev: resp.Header.Revision}}
}

// collectors stands in for the collectors: the one of from writes the
// barriers it is asked for (GTIDs of domain 1), the others move their
// watermarks to them after delay, unless apply is false.
func (w *world) collectors(ctx context.Context, t *testing.T, from string, delay time.Duration, apply bool) {
	var seq int
	var mu sync.Mutex
	go func() {
		for wr := range w.st.Client().Watch(ctx, w.st.BarrierPrefix(from), clientv3.WithPrefix()) {
			for _, ev := range wr.Events {
				var b state.Barrier
				if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &b) != nil || b.GTID != "" {
					continue
				}
				mu.Lock()
				seq += 10
				b.GTID = fmt.Sprintf("1-100-%d", seq)
				mu.Unlock()
				if _, err := state.Put(ctx, w.st, string(ev.Kv.Key), b, state.PutOptions{PrevRev: ev.Kv.ModRevision}); err != nil {
					continue
				}
				if !apply {
					continue
				}
				go func() {
					time.Sleep(delay)
					for _, dc := range w.topo.DCs {
						if dc.Name == from {
							continue
						}
						for _, sh := range b.Shards {
							wm := state.Watermark{DC: dc.Name, Origin: from, Keyspace: b.Keyspace, Shard: sh, GTID: b.GTID}
							_, _ = state.Put(ctx, w.st, w.st.WatermarkKey(dc.Name, from, b.Keyspace, sh), wm, state.PutOptions{PrevRev: -1})
						}
					}
				}()
			}
		}
	}()
}

// router opens a route stream that acknowledges every map revision it
// sees (ack false: one that never does).
func (w *world) router(ctx context.Context, t *testing.T, routers *handoff.Routers, ack bool) {
	id, closeFn, err := routers.Open(ctx, "dc-a1", "test", nil)
	require.NoError(t, err)
	t.Cleanup(closeFn)
	if !ack {
		return
	}
	ch, err := shardmap.Watch(ctx, w.st, "orders")
	require.NoError(t, err)
	go func() {
		for m := range ch {
			_ = routers.Ack(ctx, id, "orders", m.Revision)
		}
	}()
}

func ownedBy(m shardmap.Map, dc string, n int) []handoff.Move {
	var out []handoff.Move
	for _, s := range m.Shards {
		if s.Owner == dc && len(out) < n {
			out = append(out, handoff.Move{Keyspace: m.Keyspace, Shard: s.ID, From: dc, To: s.Backup, Backup: dc})
		}
	}
	return out
}

func TestWaveHandsOffAndFencesTheOldOwner(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	routers := handoff.NewRouters(w.st, "c1")
	w.router(ctx, t, routers, true)
	w.collectors(ctx, t, "dc-a1", 20*time.Millisecond, true)
	eng := handoff.NewEngine(handoff.Options{Store: w.st, Routers: routers, RouterGrace: 5 * time.Second,
		CatchUp: 10 * time.Second, Actor: "coordinator:c1"})

	m, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	moves := ownedBy(m, "dc-a1", 4)
	require.Len(t, moves, 4)
	rep, err := eng.Wave(ctx, w.fence, "op-1", moves)
	require.NoError(t, err)
	require.Zero(t, rep.StaleRouters)
	require.Len(t, rep.Results, 4)
	// The steps split the block window: they add up to it, and the
	// catch-up waited for the delayed apply.
	st := rep.Steps
	require.Equal(t, rep.Results[0].Block(), st.Acks+st.Barrier+st.CatchUp+st.Flip)
	require.GreaterOrEqual(t, st.CatchUp+st.Barrier, 20*time.Millisecond)

	after, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	require.NoError(t, after.Validate(w.topo))
	for _, r := range rep.Results {
		require.Equal(t, handoff.Moved, r.Outcome, "%+v", r)
		require.Equal(t, "1-100-10", r.Watermark, "one barrier for the wave")
		require.GreaterOrEqual(t, r.Block(), 20*time.Millisecond, "frozen at least until the targets applied the barrier")
		s, _ := after.Shard(r.Shard)
		require.Equal(t, r.To, s.Owner)
		require.Equal(t, shardmap.Active, s.State)
		require.Empty(t, s.FrozenBy)
		f, ok := s.FenceOf("dc-a1")
		require.True(t, ok)
		require.Equal(t, shardmap.Fence{DC: "dc-a1", Watermark: "1-100-10", OperationID: "op-1", Revision: r.Revision}, f)
		_, div := shardmap.Diverged(s, "dc-a1", "1-100-11")
		require.True(t, div, "what the old owner captures after the barrier diverges")
		_, div = shardmap.Diverged(s, "dc-a1", "1-100-9")
		require.False(t, div, "what it captured before is covered")
	}
	// Resumed, the same wave moves nothing twice.
	again, err := eng.Wave(ctx, w.fence, "op-1", moves)
	require.NoError(t, err)
	for _, r := range again.Results {
		require.Equal(t, handoff.Moved, r.Outcome)
	}
	final, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	require.Equal(t, after.Revision, final.Revision, "a resumed finished wave writes nothing")

	evs, err := audit.NewOutbox(w.st).List(ctx, 0)
	require.NoError(t, err)
	actions := map[string]int{}
	for _, e := range evs {
		actions[e.Action]++
	}
	require.Equal(t, 4, actions[handoff.ActionFreeze])
	require.Equal(t, 4, actions[handoff.ActionFlip])
}

func TestWaveThatCannotCatchUpUnfreezesAtTheOldOwner(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	routers := handoff.NewRouters(w.st, "c1")
	w.collectors(ctx, t, "dc-a1", 0, false) // barriers, but nothing applied
	// The barrier gets a generous wait (the collectors write it, whatever
	// the load); only the targets' catch-up is cut short.
	eng := handoff.NewEngine(handoff.Options{Store: w.st, Routers: routers, CatchUp: 300 * time.Millisecond,
		Barrier: 30 * time.Second, Actor: "coordinator:c1"})
	m, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	moves := ownedBy(m, "dc-a1", 2)
	rep, err := eng.Wave(ctx, w.fence, "op-2", moves)
	require.ErrorIs(t, err, handoff.ErrCatchUp)
	after, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	for _, r := range rep.Results {
		require.Equal(t, handoff.Aborted, r.Outcome)
		s, _ := after.Shard(r.Shard)
		require.Equal(t, "dc-a1", s.Owner, "still at the old owner")
		require.Equal(t, shardmap.Active, s.State, "unfrozen")
		require.Empty(t, s.Fences)
	}
}

func TestWaveGoesOnWithoutARouterThatDoesNotAnswer(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	routers := handoff.NewRouters(w.st, "c1")
	w.router(ctx, t, routers, true)
	w.router(ctx, t, routers, false)
	w.collectors(ctx, t, "dc-a1", 0, true)
	grace := 200 * time.Millisecond
	eng := handoff.NewEngine(handoff.Options{Store: w.st, Routers: routers, RouterGrace: grace, CatchUp: 10 * time.Second, Actor: "coordinator:c1"})
	m, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	rep, err := eng.Wave(ctx, w.fence, "op-3", ownedBy(m, "dc-a1", 1))
	require.NoError(t, err)
	require.Equal(t, 1, rep.StaleRouters)
	require.Equal(t, handoff.Moved, rep.Results[0].Outcome)
	require.GreaterOrEqual(t, rep.Results[0].Block(), grace, "the grace was waited out")
}

func TestWaveIsFencedByTheLeaderToken(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	eng := handoff.NewEngine(handoff.Options{Store: w.st, Routers: handoff.NewRouters(w.st, "c1"), Actor: "coordinator:c1"})
	m, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	deposed := state.Fence{Key: w.fence.Key, Rev: w.fence.Rev + 1000}
	_, err = eng.Wave(ctx, deposed, "op-4", ownedBy(m, "dc-a1", 1))
	require.ErrorIs(t, err, state.ErrConflict)
	after, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	require.Equal(t, m.Revision, after.Revision, "a deposed leader changes nothing")
}
