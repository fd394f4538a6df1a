package cityfail

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/dclive"
)

// greeter is a TCP server that speaks first, as a MySQL server does.
func greeter(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte{0x0a})
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// lead runs r.Lead under fence until the test ends.
func lead(t *testing.T, r *Runner, fence state.Fence) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Lead(ctx, fence) }()
	t.Cleanup(func() { cancel(); <-done })
}

func owners(t *testing.T, st *state.Store, ks string) map[string]int {
	m, err := shardmap.Load(context.Background(), st, ks)
	require.NoError(t, err)
	n := map[string]int{}
	for _, s := range m.Shards {
		n[s.Owner]++
	}
	return n
}

func outbox(t *testing.T, st *state.Store, action string) []audit.Event {
	events, err := audit.NewOutbox(st).List(context.Background(), 1000)
	require.NoError(t, err)
	var out []audit.Event
	for _, e := range events {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// TestLostDCIsFailedOverEndToEnd runs the other DCs' probers, the
// leader's liveness watcher wired to Declare and the runner over a real
// etcd: a DC whose lease is gone while the others still reach its master
// is not failed over; once its master stops answering, it is declared
// LOST and every shard it owns is flipped by one city failover stored at
// /operations/<id>, with the ledger's missing requests per shard and an
// audit event; a second declaration stores nothing.
func TestLostDCIsFailedOverEndToEnd(t *testing.T) {
	w := newWorld(t, 8, topology.Keyspace{Name: "orders"}, topology.Keyspace{Name: "carts"})
	ctx := t.Context()
	clk := &clock{now: w.now}
	masters := map[string]net.Listener{}
	for _, dc := range w.topo.DCs {
		ln := greeter(t)
		masters[dc.Name] = ln
		_, err := w.st.PutMaster(ctx, state.MasterRecord{DC: dc.Name, Cluster: "main", Instance: dc.Name + "-db1",
			Addr: ln.Addr().String(), Term: 1}, -1, nil)
		require.NoError(t, err)
	}
	require.NoError(t, w.st.PutDCLease(ctx, state.DCLease{DC: "dc-a1", Agent: "agent"}, 0, nil))
	log := zerolog.New(zerolog.NewTestWriter(t))
	var probers []*dclive.Prober
	for _, dc := range []string{"dc-a2", "dc-b1"} {
		p, err := dclive.NewProber(dclive.ProberOptions{Store: w.st, DC: dc, ID: "coord-" + dc, Logger: log, Now: clk.Now})
		require.NoError(t, err)
		probers = append(probers, p)
	}
	probe := func() {
		for _, p := range probers {
			require.NoError(t, p.Once(ctx))
		}
	}
	orders, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	var first shardmap.Shard
	for _, s := range orders.Shards {
		if s.Owner == "dc-a1" {
			first = s
			break
		}
	}
	missing := []Missing{{RequestID: "req-1", Keyspace: "orders", Shard: int32(first.ID)}, {RequestID: "req-2", Keyspace: "orders", Shard: int32(first.ID)}}
	f := New(Options{Store: w.st, Ledger: fakeLedger{"dc-a1>" + first.Backup: missing}, Auto: true, ID: "leader",
		Actor: "coordinator:leader", Logger: log, Now: time.Now})
	r := NewRunner(RunnerOptions{Flipper: f, Logger: log})
	lead(t, r, w.fence)
	declare := func(ctx context.Context, fence state.Fence, dc string, s dclive.Status) {
		_, err := r.Declare(ctx, fence, Request{DC: dc, Verdict: string(s.Code), Reason: s.Reason, Witnesses: s.Witnesses,
			LeaseGoneSince: s.LeaseGoneSince})
		assert.NoError(t, err)
	}
	watcher := dclive.NewWatcher(dclive.WatcherOptions{Store: w.st, ID: "leader", Logger: log, Now: clk.Now, OnLost: declare})
	probe()
	require.NoError(t, watcher.Once(ctx, w.fence))

	t.Log("dc-a1's lease is gone while the others still reach its master: not failed over")
	_, err = w.st.Client().Delete(ctx, w.st.DCLeaseKey("dc-a1"))
	require.NoError(t, err)
	require.NoError(t, watcher.Once(ctx, w.fence))
	clk.Add(2 * time.Second)
	probe()
	require.NoError(t, watcher.Once(ctx, w.fence))
	st, _, err := state.Get[dclive.Status](ctx, w.st, dclive.StatusKey(w.st, "dc-a1"))
	require.NoError(t, err)
	require.Equal(t, dclive.SeenByPeers, st.Code, st.Reason)
	check.Hold(t, 500*time.Millisecond, 50*time.Millisecond, func() error {
		recs, err := List(ctx, w.st)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			return assert.AnError
		}
		return check.That(owners(t, w.st, "orders")["dc-a1"] > 0, "dc-a1 lost its shards")
	})

	t.Log("dc-a1's master stops answering: LOST, failed over")
	require.NoError(t, masters["dc-a1"].Close())
	clk.Add(time.Second)
	probe()
	require.NoError(t, watcher.Once(ctx, w.fence))
	var rec Record
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		recs, err := List(ctx, w.st)
		if err != nil {
			return err
		}
		if len(recs) != 1 {
			return check.That(false, "%d records", len(recs))
		}
		rec = recs[0]
		return check.That(rec.State == Done, "state %s", rec.State)
	})
	assert.Equal(t, dclive.Lost, dclive.Code(rec.Verdict))
	assert.Equal(t, []string{"dc-a2", "dc-b1"}, rec.Witnesses)
	assert.Equal(t, "automatic", rec.Trigger)
	assert.Equal(t, "leader", rec.Leader)
	assert.Equal(t, len(rec.Shards), rec.Flipped())
	assert.Equal(t, []string{"req-1", "req-2"}, rec.Estimate.Requests)
	for _, s := range rec.Shards {
		if s.Keyspace == "orders" && s.Shard == first.ID {
			assert.Equal(t, []string{"req-1", "req-2"}, s.Requests)
			assert.Equal(t, 2, s.LedgerMissing)
		} else {
			assert.Empty(t, s.Requests)
		}
	}
	for _, ks := range []string{"orders", "carts"} {
		assert.Zero(t, owners(t, w.st, ks)["dc-a1"], ks)
	}
	raw, err := w.st.Client().Get(ctx, w.st.Key("operations", rec.ID))
	require.NoError(t, err)
	require.Len(t, raw.Kvs, 1, "stored with the other operations")
	var kind struct{ Kind string }
	require.NoError(t, json.Unmarshal(raw.Kvs[0].Value, &kind))
	assert.Equal(t, KindCityFailover, kind.Kind)
	flips := outbox(t, w.st, ActionFlip)
	require.Len(t, flips, 1)
	assert.Equal(t, rec.ID, flips[0].Params["failover_id"])
	assert.Equal(t, "req-1,req-2", flips[0].Params["estimate_request_ids"])

	t.Log("a new term declares dc-a1 LOST again: nothing to flip, nothing stored")
	_, err = r.Declare(ctx, w.fence, Request{DC: "dc-a1"})
	require.ErrorIs(t, err, ErrNothingToFlip)
	recs, err := List(ctx, w.st)
	require.NoError(t, err)
	assert.Len(t, recs, 1)
}

// TestNewLeaderResumesAFailover leaves a failover RUNNING with the shards
// of one keyspace flipped, as a leader that died between two flip
// transactions does; the next leader finishes it: the flipped shards are
// recognised (not moved again), the others flipped, one record DONE.
func TestNewLeaderResumesAFailover(t *testing.T) {
	w := newWorld(t, 8, topology.Keyspace{Name: "orders"}, topology.Keyspace{Name: "carts"})
	ctx := t.Context()
	log := zerolog.New(zerolog.NewTestWriter(t))
	dead := New(Options{Store: w.st, Auto: true, ID: "dead", Actor: "coordinator:dead", Logger: log, Now: time.Now})
	rec, err := dead.Create(ctx, &w.fence, dead.NewRecord(Request{DC: "dc-a1", Verdict: "DCLost"}, "coordinator:dead"))
	require.NoError(t, err)
	rec.State, rec.Leader, rec.StartedAt = Running, "dead", time.Now().UTC()
	_, err = state.Put(ctx, w.st, Key(w.st, rec.ID), rec, state.PutOptions{PrevRev: rec.Revision})
	require.NoError(t, err)
	m, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	moved := map[int]string{}
	for _, s := range m.Shards {
		if s.Owner == "dc-a1" {
			m, err = shardmap.Handoff(m, s.ID, s.Backup, "dc-a1", shardmap.Fence{OperationID: rec.ID})
			require.NoError(t, err)
			moved[s.ID] = s.Backup
		}
	}
	require.NotEmpty(t, moved)
	_, err = shardmap.Save(ctx, w.st, m, m.Revision, nil, w.topo)
	require.NoError(t, err)
	flipped, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)

	t.Log("a new leader, with a fence of its own, resumes")
	resp, err := w.st.Client().Put(ctx, w.st.Key("leader-fence-2"), "next")
	require.NoError(t, err)
	next := state.Fence{Key: w.st.Key("leader-fence-2"), Rev: resp.Header.Revision}
	f := New(Options{Store: w.st, Auto: true, ID: "next", Actor: "coordinator:next", Logger: log, Now: time.Now})
	lead(t, NewRunner(RunnerOptions{Flipper: f, Logger: log}), next)
	var got Record
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		got, err = Get(ctx, w.st, rec.ID)
		if err != nil {
			return err
		}
		return check.That(got.State == Done, "state %s", got.State)
	})
	assert.Equal(t, "next", got.Leader)
	assert.Equal(t, len(got.Shards), got.Flipped())
	inOrders := 0
	for _, s := range got.Shards {
		if s.Keyspace == "orders" {
			inOrders++
			assert.Equal(t, moved[s.Shard], s.To, "shard %d", s.Shard)
		}
	}
	assert.Equal(t, len(moved), inOrders, "the shards flipped before the restart are on the record")
	after, err := shardmap.Load(ctx, w.st, "orders")
	require.NoError(t, err)
	assert.Equal(t, flipped.Revision, after.Revision, "the shards flipped before the restart are not moved again")
	assert.Zero(t, owners(t, w.st, "carts")["dc-a1"])
	recs, err := List(ctx, w.st)
	require.NoError(t, err)
	assert.Len(t, recs, 1)
}

// TestKillSwitchHoldsTheDeclaredFailover: with a kill switch on the DC the
// declared failover is stored and run but flips nothing: HELD on the
// record and in the audit log, and a further declaration stores no second
// one while it is held.
func TestKillSwitchHoldsTheDeclaredFailover(t *testing.T) {
	w := newWorld(t, 8, topology.Keyspace{Name: "orders"})
	ctx := t.Context()
	log := zerolog.New(zerolog.NewTestWriter(t))
	require.NoError(t, w.st.PutKillSwitch(ctx, state.KillSwitch{Scope: "global", Reason: "drill", SetBy: "t", SetAt: w.now}))
	f := New(Options{Store: w.st, Auto: true, ID: "leader", Actor: "coordinator:leader", Logger: log, Now: time.Now})
	r := NewRunner(RunnerOptions{Flipper: f, Logger: log})
	lead(t, r, w.fence)
	rec, err := r.Declare(ctx, w.fence, Request{DC: "dc-a1", Verdict: "DCLost"})
	require.NoError(t, err)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		rec, err = Get(ctx, w.st, rec.ID)
		if err != nil {
			return err
		}
		return check.That(rec.State == Held, "state %s", rec.State)
	})
	assert.Contains(t, rec.Held, "kill switch global")
	assert.Zero(t, rec.Flipped())
	assert.NotZero(t, owners(t, w.st, "orders")["dc-a1"])
	held := outbox(t, w.st, ActionHeld)
	require.Len(t, held, 1)
	assert.Equal(t, audit.OutcomeDenied, held[0].Outcome)
	_, err = r.Declare(ctx, w.fence, Request{DC: "dc-a1"})
	var open *OpenError
	require.ErrorAs(t, err, &open)
	assert.Equal(t, rec.ID, open.ID)
}
