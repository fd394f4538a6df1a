package repl

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
)

// holdingBatch is what the collector logs when its test.hold_batch_after
// hook holds a batch.
const holdingBatch = "TEST HOOK test.hold_batch_after: holding a batch"

// TestReplication runs the acceptance scenarios of cross-DC replication on
// one shared bed, in order; each starts from empty tables.
func TestReplication(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 mariadbd and 6 service processes")
	}
	began := time.Now()
	b := startBed(t)
	b.startServices()
	a1, b1 := b.dcs[dcA1], b.dcs[dcB1]

	t.Run("RowsReachEveryDCOnce", func(t *testing.T) {
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Single-row transactions on dc-a1's own shards with updates and
		// deletes, and multi-row inserts spread over every shard.
		own := b.runLoad(ctx, loadSpec{dc: a1, writers: 8, idBase: 1_000_000, rows: 1600, mix: true})
		plain := b.runLoad(ctx, loadSpec{dc: a1, writers: 2, idBase: 2_000_000, rows: 600, batch: 20, anyShard: true})
		r1, r2 := own.wait(t), plain.wait(t)
		t.Logf("dc-a1 load: %s; multi-row inserts: %s", r1, r2)
		b.requireConverged(t, m, dcA1)
		b.requireRows(t, dcA1, r1, r2)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {r1, r2}})
	})

	t.Run("ConcurrentOwnersNoEcho", func(t *testing.T) {
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		la := b.runLoad(ctx, loadSpec{dc: a1, writers: 6, idBase: 1_000_000, rows: 1200, mix: true})
		lb := b.runLoad(ctx, loadSpec{dc: b1, writers: 6, idBase: 5_000_000, rows: 1200, mix: true})
		ra, rb := la.wait(t), lb.wait(t)
		t.Logf("dc-a1: %s; dc-b1: %s", ra, rb)
		b.requireConverged(t, m, dcA1, dcB1)
		b.requireRows(t, dcA1, ra, rb)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {ra}, dcB1: {rb}})
	})

	t.Run("DuplicateDeliveryAppliedOnce", func(t *testing.T) {
		b.waitIdle(t)
		for _, name := range dcNames() {
			c := b.dcs[name].collector
			c.setDuplicateDelivery(true)
			c.restart()
		}
		defer func() {
			for _, name := range dcNames() {
				c := b.dcs[name].collector
				c.setDuplicateDelivery(false)
				b.waitIdle(t)
				c.restart()
			}
		}()
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		la := b.runLoad(ctx, loadSpec{dc: a1, writers: 6, idBase: 1_000_000, rows: 900, mix: true})
		lb := b.runLoad(ctx, loadSpec{dc: b1, writers: 2, idBase: 5_000_000, rows: 300, batch: 5})
		ra, rb := la.wait(t), lb.wait(t)
		t.Logf("dc-a1: %s; dc-b1: %s", ra, rb)
		b.requireConverged(t, m, dcA1, dcB1)
		b.waitIdle(t)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {ra}, dcB1: {rb}})
		// Every message really came twice: each inbound stream holds each
		// request of the other DCs and its copy, and each collector skipped
		// one delivery of every request.
		after := b.marks(t)
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		for _, target := range dcNames() {
			sent := uint64(0)
			for _, origin := range dcNames() {
				if origin != target {
					sent += after.out[origin] - m.out[origin]
				}
			}
			if got := after.in[target] - m.in[target]; got != 2*sent {
				t.Errorf("IN_%s got %d messages, want twice the %d requests of the other DCs", target, got, sent)
			}
			for _, origin := range []string{dcA1, dcB1} {
				if origin == target {
					continue
				}
				dups, err := b.dcs[target].collector.metric(ctx2, "drplane_collector_duplicates_total", "origin", origin)
				if err != nil {
					t.Fatalf("%s: %v", target, err)
				}
				if want := float64(after.out[origin] - m.out[origin]); dups < want {
					t.Errorf("collector of %s skipped %v duplicates of %s, want at least %v", target, dups, origin, want)
				}
			}
		}
	})

	// CollectorKilledMidBatch proves that a collector killed (SIGKILL)
	// with a batch in hand, its statements executed and not committed,
	// loses and doubles nothing once restarted: the batch rolls back, its
	// messages come again and are applied once, and requests committed but
	// not yet acked before the kill are skipped by their dedup rows.
	//
	// It cannot flake under load: the collector's test.hold_batch_after
	// hook holds a batch uncommitted after 300 applied requests until the
	// process ends, and the test kills it only once its log says it holds
	// one, so the batch is in hand when it dies whatever the timing.
	t.Run("CollectorKilledMidBatch", func(t *testing.T) {
		b.waitIdle(t)
		b1.collector.setHoldBatchAfter(300)
		b1.collector.restart()
		defer func() {
			b1.collector.setHoldBatchAfter(0)
			if !b1.collector.running() {
				b1.collector.start()
			}
		}()
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		la := b.runLoad(ctx, loadSpec{dc: a1, writers: 8, idBase: 1_000_000, rows: 3000, mix: true})
		// Kill dc-b1's collector once it holds a batch uncommitted, with
		// its messages delivered and not acked, while the load keeps
		// writing.
		check.For(t, waitConverge, pollEvery, func() error {
			return check.That(b1.collector.loggedSinceStart(holdingBatch), "the collector of dc-b1 to hold a batch")
		})
		js := b.js(t, dcB1)
		c, err := js.Consumer(ctx, embednats.InStream(dcB1), "collector")
		if err != nil {
			t.Fatal(err)
		}
		n, err := b.dedupCount(ctx, dcB1, dcA1)
		if err != nil {
			t.Fatal(err)
		}
		b1.collector.kill()
		inHand := c.CachedInfo().NumAckPending
		t.Logf("collector of dc-b1 killed (SIGKILL) with %d requests applied and %d messages in hand", n, inHand)
		if n < 300 || inHand == 0 {
			t.Fatalf("the collector held a batch with %d requests applied (want at least 300) and %d messages unacked (want some)", n, inHand)
		}
		b1.collector.setHoldBatchAfter(0)
		// Nothing is applied in dc-b1 while it is down.
		before, err := b.dedupCount(ctx, dcB1, dcA1)
		if err != nil {
			t.Fatal(err)
		}
		check.Hold(t, time.Second, pollEvery, func() error {
			if n, _ := b.dedupCount(ctx, dcB1, dcA1); n != before {
				return fmt.Errorf("dc-b1 applied %d requests with its collector dead", n-before)
			}
			return nil
		})
		b1.collector.start()
		ra := la.wait(t)
		t.Logf("dc-a1 load: %s", ra)
		b.requireConverged(t, m, dcA1)
		b.requireRows(t, dcA1, ra)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {ra}})
		if n, err := b1.collector.metric(ctx, "drplane_collector_duplicates_total", "origin", dcA1); err == nil {
			t.Logf("restarted collector of dc-b1 skipped %v requests applied before the kill", n)
		}
	})

	t.Run("RemoteDCDownCatchesUp", func(t *testing.T) {
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		b1.collector.stop()
		if err := b.mesh.Stop(dcB1); err != nil {
			t.Fatal(err)
		}
		t.Log("dc-b1's NATS server and collector stopped")
		ra := b.runLoad(ctx, loadSpec{dc: a1, writers: 6, idBase: 1_000_000, rows: 1200, mix: true}).wait(t)
		t.Logf("dc-a1 load: %s", ra)
		// dc-a2 keeps up meanwhile; dc-b1 gets nothing.
		want, err := b.tableState(ctx, dcA1)
		if err != nil {
			t.Fatal(err)
		}
		check.For(t, waitConverge, pollEvery, func() error {
			st, err := b.tableState(ctx, dcA2)
			if err != nil {
				return err
			}
			return check.That(st == want, "dc-a2 to converge while dc-b1 is down")
		})
		if st, err := b.tableState(ctx, dcB1); err != nil || st.rows != 0 {
			t.Fatalf("dc-b1 changed while cut off: %+v %v", st, err)
		}
		restarted := time.Now()
		if err := b.mesh.Restart(ctx, dcB1); err != nil {
			t.Fatal(err)
		}
		b1.collector.start()
		t.Logf("dc-b1's NATS server and collector back in %s", time.Since(restarted).Round(time.Millisecond))
		b.requireConverged(t, m, dcA1)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {ra}})
	})

	// Last: it leaves dc-a1 with one instance.
	t.Run("ReshipFollowsFailover", func(t *testing.T) {
		b.reset(t)
		m := b.marks(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		la := b.runLoad(ctx, loadSpec{dc: a1, writers: 8, idBase: 1_000_000, rows: 2400, mix: true})
		lb := b.runLoad(ctx, loadSpec{dc: b1, writers: 2, idBase: 5_000_000, rows: 600, mix: true})
		check.For(t, 60*time.Second, pollEvery, func() error {
			la.res.mu.Lock()
			defer la.res.mu.Unlock()
			return check.That(la.res.inserted >= 500, "500 rows in dc-a1 before the failover")
		})
		next := b.failover(t, a1)
		ra, rb := la.wait(t), lb.wait(t)
		t.Logf("dc-a1 load: %s; dc-b1: %s", ra, rb)
		b.requireConverged(t, m, dcA1, dcB1)
		b.requireRows(t, dcA1, ra, rb)
		b.requireNoEcho(t, m, map[string][]*loadResult{dcA1: {ra}, dcB1: {rb}})
		// reship moved to the promoted instance.
		var cp struct {
			Master string `json:"master"`
		}
		raw, _, err := state.Get[json.RawMessage](ctx, b.store, b.store.Key("reship", dcA1, clusterName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &cp); err != nil {
			t.Fatal(err)
		}
		if cp.Master != dcA1+"-"+next.Name() {
			t.Errorf("reship checkpoint names master %q, want %q", cp.Master, dcA1+"-"+next.Name())
		}
		// Its binlog stream broke with the old master (stream_error) or it
		// saw the master record move first (master_change).
		if n, err := a1.reship.metric(ctx, "drplane_reship_syncer_restarts_total"); err != nil || n < 1 {
			t.Errorf("reship of dc-a1 restarted its capture %v times across the failover (%v)", n, err)
		}
	})
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// failover promotes d's replica by hand while the load runs: the master is
// made read-only, the replica applies everything and stops replicating,
// the old master is killed (SIGKILL), the replica is made writable and the
// master record moves to it.
func (b *bed) failover(t *testing.T, d *dc) *mysqld.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, next := d.currentMaster(), d.db.Replicas[0]
	began := time.Now()
	oldDB := d.db.AdminDB(old)
	if err := mysqld.SetReadOnly(ctx, oldDB, true); err != nil {
		t.Fatal(err)
	}
	var pos string
	if err := oldDB.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	nextDB := d.db.AdminDB(next)
	if err := mysqld.WaitForGTID(ctx, nextDB, pos, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := mysqld.StopSlave(ctx, nextDB); err != nil {
		t.Fatal(err)
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := mysqld.ResetSlaveAll(ctx, nextDB); err != nil {
		t.Fatal(err)
	}
	if err := mysqld.SetReadOnly(ctx, nextDB, false); err != nil {
		t.Fatal(err)
	}
	rec, rev, err := b.store.Master(ctx, d.name, clusterName)
	if err != nil {
		t.Fatal(err)
	}
	rec.Instance, rec.Addr, rec.Term, rec.Reason, rec.UpdatedAt = d.name+"-"+next.Name(), next.Addr(), rec.Term+1, "test failover", time.Now().UTC()
	if _, err := b.store.PutMaster(ctx, rec, rev, nil); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.master = next
	d.mu.Unlock()
	t.Logf("%s: %s promoted at %s (old master read-only, then killed), writes blocked %s", d.name, next.Name(), pos,
		time.Since(began).Round(time.Millisecond))
	return next
}

// dedupCount counts origin's requests in target's dedup table.
func (b *bed) dedupCount(ctx context.Context, target, origin string) (int, error) {
	var n int
	err := b.dcs[target].app().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+dedupTable+" WHERE origin_dc = ?", origin).Scan(&n)
	return n, err
}
