package evac_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
)

const waitFor = 20 * time.Second

// bed is embedded etcd with the lab topology and a 16-shard map, and
// stand-in collectors: every DC's answers its barriers (GTIDs of the DC's
// own domain), and every other DC applies them after delay.
type bed struct {
	st    *state.Store
	topo  topology.Topology
	delay atomic.Int64 // nanoseconds
}

func newBed(t *testing.T) *bed {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	topo := labTopology(16, "orders")
	for i, dc := range topo.DCs {
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: "127.0.0.1:" + strconv.Itoa(3306+i)}}})
	}
	ctx := t.Context()
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, shardmap.New(topo.Keyspaces[0], topo), 0, nil, topo)
	require.NoError(t, err)
	b := &bed{st: st, topo: topo}
	b.collectors(ctx)
	return b
}

func (b *bed) collectors(ctx context.Context) {
	var mu sync.Mutex
	seq := map[string]int{}
	domain := map[string]int{}
	for i, dc := range b.topo.DCs {
		domain[dc.Name] = i + 1
	}
	go func() {
		for wr := range b.st.Client().Watch(ctx, b.st.Prefix("barriers"), clientv3.WithPrefix()) {
			for _, ev := range wr.Events {
				var br state.Barrier
				if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &br) != nil || br.GTID != "" {
					continue
				}
				mu.Lock()
				seq[br.DC] += 10
				br.GTID = fmt.Sprintf("%d-100-%d", domain[br.DC], seq[br.DC])
				mu.Unlock()
				if _, err := state.Put(ctx, b.st, string(ev.Kv.Key), br, state.PutOptions{PrevRev: ev.Kv.ModRevision}); err != nil {
					continue
				}
				go func(br state.Barrier) {
					select {
					case <-time.After(time.Duration(b.delay.Load())):
					case <-ctx.Done():
						return
					}
					for _, dc := range b.topo.DCs {
						if dc.Name == br.DC {
							continue
						}
						for _, sh := range br.Shards {
							wm := state.Watermark{DC: dc.Name, Origin: br.DC, Keyspace: br.Keyspace, Shard: sh, GTID: br.GTID}
							_, _ = state.Put(ctx, b.st, b.st.WatermarkKey(dc.Name, br.DC, br.Keyspace, sh), wm, state.PutOptions{PrevRev: -1})
						}
					}
				}(br)
			}
		}
	}()
}

// coordinator is one leader candidate with its runner.
type coordinator struct {
	stop context.CancelFunc
	done chan struct{}
}

func (b *bed) coordinator(t *testing.T, id string) *coordinator {
	t.Helper()
	l, err := leader.New(leader.Options{Store: b.st, ID: id, TTL: 2 * time.Second, RetryDelay: 50 * time.Millisecond, Logger: zerolog.Nop()})
	require.NoError(t, err)
	eng := handoff.NewEngine(handoff.Options{Store: b.st, Routers: handoff.NewRouters(b.st, id), RouterGrace: 100 * time.Millisecond,
		CatchUp: 5 * time.Second, Actor: "coordinator:" + id})
	r := evac.NewRunner(evac.RunnerOptions{Store: b.st, Leader: l, Engine: eng, ID: id, RetryDelay: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	c := &coordinator{stop: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = l.Run(ctx) }()
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	go func() { wg.Wait(); close(c.done) }()
	t.Cleanup(c.shutdown)
	return c
}

func (c *coordinator) shutdown() {
	c.stop()
	<-c.done
}

// evacuation stores an evacuation of dc as the API would.
func (b *bed) evacuation(t *testing.T, dc string, parallel int) evac.Operation {
	t.Helper()
	w, err := evac.LoadWorld(t.Context(), b.st)
	require.NoError(t, err)
	p, err := evac.PlanEvacuate(w, dc, "", parallel)
	require.NoError(t, err)
	now := time.Now().UTC()
	op, err := evac.NewStore(b.st).Create(t.Context(), evac.Operation{ID: evac.NewID(evac.KindEvacuate, now), Kind: evac.KindEvacuate, DC: dc,
		Parallel: parallel, State: evac.Pending, RequestedBy: "test", CreatedAt: now, Handoffs: p.Handoffs, Targets: p.Targets})
	require.NoError(t, err)
	return op
}

func (b *bed) waitState(t *testing.T, id string, want ...evac.State) evac.Operation {
	t.Helper()
	var op evac.Operation
	check.For(t, waitFor, 10*time.Millisecond, func() error {
		var err error
		op, err = evac.NewStore(b.st).Get(t.Context(), id)
		if err != nil {
			return err
		}
		for _, s := range want {
			if op.State == s {
				return nil
			}
		}
		return fmt.Errorf("operation is %s (%s), want %v", op.State, op.Error, want)
	})
	return op
}

func (b *bed) dcState(t *testing.T, dc string) topology.DCState {
	t.Helper()
	topo, _, err := b.st.Topology(t.Context())
	require.NoError(t, err)
	d, ok := topo.DC(dc)
	require.True(t, ok)
	return d.StateOf()
}

// flips counts the handoff.flip audit events per shard.
func (b *bed) flips(t *testing.T) map[string]int {
	t.Helper()
	evs, err := audit.NewOutbox(b.st).List(t.Context(), 0)
	require.NoError(t, err)
	out := map[string]int{}
	for _, e := range evs {
		if e.Action == handoff.ActionFlip {
			out[e.Target]++
		}
	}
	return out
}

// settled checks that no shard is frozen and none is owned by dc.
func (b *bed) settled(t *testing.T, away string) shardmap.Map {
	t.Helper()
	m, err := shardmap.Load(t.Context(), b.st, "orders")
	require.NoError(t, err)
	require.NoError(t, m.Validate(b.topo))
	for _, s := range m.Shards {
		assert.Equal(t, shardmap.Active, s.State, "shard %d", s.ID)
		if away != "" {
			assert.NotEqual(t, away, s.Owner, "shard %d", s.ID)
		}
	}
	return m
}

func TestEvacuationMovesEveryShardOnceAndEvacuatesTheDC(t *testing.T) {
	b := newBed(t)
	b.coordinator(t, "c1")
	op := b.evacuation(t, "dc-a1", 3)
	require.Len(t, op.Handoffs, 4)
	done := b.waitState(t, op.ID, evac.Succeeded)
	b.settled(t, "dc-a1")
	assert.Equal(t, topology.DCEvacuated, b.dcState(t, "dc-a1"))

	tot := done.Totals()
	assert.Equal(t, 4, tot.Moved)
	assert.Equal(t, 2, tot.Waves)
	assert.Equal(t, 2, tot.WavesDone)
	assert.Positive(t, tot.DurationMs)
	for _, h := range done.Handoffs {
		assert.Equal(t, evac.StepMoved, h.Step)
		assert.NotEmpty(t, h.Watermark)
		assert.False(t, h.FrozenAt.IsZero())
		assert.Positive(t, h.Block())
	}
	for target, n := range b.flips(t) {
		assert.Equal(t, 1, n, "shard %s flipped more than once", target)
	}
	// The lock is released: another evacuation of the DC may be stored.
	_, err := b.st.Client().Get(t.Context(), evac.NewStore(b.st).LockKey("dc-a1"))
	require.NoError(t, err)
	again := b.evacuation(t, "dc-a1", 3)
	assert.Empty(t, again.Handoffs, "nothing left to move")
	b.waitState(t, again.ID, evac.Succeeded)
}

func TestCancelStopsAfterTheWaveAndResumeFinishes(t *testing.T) {
	b := newBed(t)
	b.delay.Store(int64(150 * time.Millisecond))
	b.coordinator(t, "c1")
	op := b.evacuation(t, "dc-a1", 1) // 4 waves of one shard
	ops := evac.NewStore(b.st)
	check.For(t, waitFor, 5*time.Millisecond, func() error {
		cur, err := ops.Get(t.Context(), op.ID)
		if err != nil {
			return err
		}
		if cur.Totals().Moved < 1 {
			return fmt.Errorf("no wave done yet")
		}
		cur.State = evac.Canceling
		_, err = ops.Update(t.Context(), cur, nil)
		return err
	})
	canceled := b.waitState(t, op.ID, evac.Canceled)
	tot := canceled.Totals()
	assert.GreaterOrEqual(t, tot.Moved, 1)
	assert.Less(t, tot.Moved, 4, "cancel stopped the operation before its last wave")
	m := b.settled(t, "")
	for _, h := range canceled.Handoffs {
		s, _ := m.Shard(h.Shard)
		switch h.Step {
		case evac.StepMoved:
			assert.Equal(t, h.To, s.Owner)
		case evac.StepPending:
			assert.Equal(t, "dc-a1", s.Owner, "a shard not moved stays at its old owner, unfrozen")
		default:
			t.Errorf("shard %d left %s", h.Shard, h.Step)
		}
	}
	assert.Equal(t, topology.DCDraining, b.dcState(t, "dc-a1"), "a canceled evacuation leaves the DC draining")

	canceled.State = evac.Pending
	_, err := ops.Update(t.Context(), canceled, nil)
	require.NoError(t, err)
	b.waitState(t, op.ID, evac.Succeeded)
	b.settled(t, "dc-a1")
	for target, n := range b.flips(t) {
		assert.Equal(t, 1, n, "shard %s flipped more than once", target)
	}
}

// TestRestoreUndoesACanceledEvacuation: a canceled evacuation leaves its
// DC DRAINING (audited so) and every shard at a settled owner; restore
// with move_home sets the DC ACTIVE and hands the moved shards back.
func TestRestoreUndoesACanceledEvacuation(t *testing.T) {
	b := newBed(t)
	b.delay.Store(int64(100 * time.Millisecond))
	b.coordinator(t, "c1")
	op := b.evacuation(t, "dc-a1", 1)
	ops := evac.NewStore(b.st)
	check.For(t, waitFor, 5*time.Millisecond, func() error {
		cur, err := ops.Get(t.Context(), op.ID)
		if err != nil {
			return err
		}
		if cur.Totals().Moved < 1 {
			return fmt.Errorf("no wave done yet")
		}
		cur.State = evac.Canceling
		_, err = ops.Update(t.Context(), cur, nil)
		return err
	})
	canceled := b.waitState(t, op.ID, evac.Canceled)
	tot := canceled.Totals()
	require.Less(t, tot.Moved, 4)
	assert.Equal(t, topology.DCDraining, b.dcState(t, "dc-a1"))
	evs, err := audit.NewOutbox(b.st).List(t.Context(), 0)
	require.NoError(t, err)
	var finish *audit.Event
	for i, e := range evs {
		if e.Action == evac.ActionFinish && e.Target == op.ID {
			finish = &evs[i]
		}
	}
	require.NotNil(t, finish, "the finish is audited")
	assert.Equal(t, "CANCELED", finish.Params["state"])
	assert.Equal(t, "DRAINING", finish.Params["dc_state"])
	assert.Equal(t, strconv.Itoa(4-tot.Moved), finish.Params["left"])

	// Restore with move_home: ACTIVE, and every shard home again.
	w, err := evac.LoadWorld(t.Context(), b.st)
	require.NoError(t, err)
	p, err := evac.PlanRestore(w, "dc-a1", 4)
	require.NoError(t, err)
	require.Len(t, p.Handoffs, tot.Moved, "restore hands back exactly the shards the evacuation moved")
	now := time.Now().UTC()
	rst, err := ops.Create(t.Context(), evac.Operation{ID: evac.NewID(evac.KindRestore, now), Kind: evac.KindRestore, DC: "dc-a1", MoveHome: true,
		Parallel: 4, State: evac.Pending, RequestedBy: "test", CreatedAt: now, Handoffs: p.Handoffs, Targets: p.Targets})
	require.NoError(t, err, "the canceled evacuation released the DC's lock")
	b.waitState(t, rst.ID, evac.Succeeded)
	assert.Equal(t, topology.DCActive, b.dcState(t, "dc-a1"))
	m := b.settled(t, "")
	for _, s := range m.Shards {
		assert.Equal(t, s.HomeDC(), s.Owner, "shard %d is home again", s.ID)
	}
	// The restore leaves the canceled evacuation's record as it was.
	cur, err := ops.Get(t.Context(), op.ID)
	require.NoError(t, err)
	assert.Equal(t, evac.Canceled, cur.State)
}

func TestNextLeaderResumesAnEvacuation(t *testing.T) {
	b := newBed(t)
	b.delay.Store(int64(200 * time.Millisecond))
	c1 := b.coordinator(t, "c1")
	op := b.evacuation(t, "dc-a1", 1)
	ops := evac.NewStore(b.st)
	// Stop the first leader in the middle of a wave.
	var inFlight []int
	var seen time.Time
	check.For(t, waitFor, 2*time.Millisecond, func() error {
		cur, err := ops.Get(t.Context(), op.ID)
		if err != nil {
			return err
		}
		seen, inFlight = time.Now(), nil
		for i, h := range cur.Handoffs {
			if h.Step == evac.StepFrozen && cur.Totals().Moved >= 1 {
				inFlight = append(inFlight, i)
			}
		}
		return check.That(len(inFlight) > 0, "no second wave running yet")
	})
	c1.shutdown()
	b.coordinator(t, "c2")
	done := b.waitState(t, op.ID, evac.Succeeded)
	assert.Equal(t, "c2", done.Leader)
	b.settled(t, "dc-a1")
	assert.Equal(t, 4, done.Totals().Moved)
	// The block window of the wave the first leader left counts from its
	// start, not from the second leader's freeze.
	for _, i := range inFlight {
		h := done.Handoffs[i]
		assert.False(t, h.FrozenAt.After(seen), "shard %d: frozen at %s, seen in its wave at %s", h.Shard, h.FrozenAt, seen)
		assert.Greater(t, h.Block(), h.DoneAt.Sub(seen), "shard %d", h.Shard)
	}
	for target, n := range b.flips(t) {
		assert.Equal(t, 1, n, "shard %s flipped more than once", target)
	}
}

func TestAnEvacuationThatCannotCatchUpFailsWithShardsAtTheirOwner(t *testing.T) {
	b := newBed(t)
	b.delay.Store(int64(time.Hour)) // no DC ever applies the barrier
	b.coordinator(t, "c1")
	op := b.evacuation(t, "dc-a1", 4)
	failed := b.waitState(t, op.ID, evac.Failed)
	assert.Contains(t, failed.Error, "catch up")
	assert.Equal(t, 4, failed.Totals().Aborted)
	m := b.settled(t, "")
	for _, s := range m.Shards {
		assert.Equal(t, s.Home, s.Owner, "shard %d", s.ID)
	}
	// The lock is free for a resume or a new operation.
	resp, err := b.st.Client().Get(t.Context(), evac.NewStore(b.st).LockKey("dc-a1"))
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs)
}
