package apply_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/collector/internal/apply"
)

// TestApply runs the apply path on real parts: MariaDB (master and a
// replica), embedded etcd, and three embedded NATS servers; changes from
// dc-a1 and dc-a2 reach dc-b1's inbound stream by sourcing.
func TestApply(t *testing.T) {
	sh := startShared(t)
	t.Run("inserts updates deletes from two origins", func(t *testing.T) { testApplies(t, sh) })
	t.Run("every message delivered twice", func(t *testing.T) { testDuplicateDelivery(t, sh) })
	t.Run("stopped after commit before ack", func(t *testing.T) { testCrashAfterCommit(t, sh) })
	t.Run("poison events", func(t *testing.T) { testPoison(t, sh) })
	t.Run("read-only master is transient", func(t *testing.T) { testTransient(t, sh) })
	t.Run("binlog skip flag", func(t *testing.T) { testSkipFlag(t, sh) })
	t.Run("local NATS restarted while applying", func(t *testing.T) { testNATSRestart(t, sh) })
	t.Run("duplicate past the first dedup chunk", func(t *testing.T) { testBigBatchDuplicate(t, sh) })
	t.Run("late change older than the rows", func(t *testing.T) { testOrderingGuard(t, sh) })
	t.Run("a change its origin discarded after shipping it", func(t *testing.T) { testDiscarded(t, sh) })
	t.Run("an operator's reapply of a divergence entry", func(t *testing.T) { testReapply(t, sh) })
	t.Run("handoff barriers", func(t *testing.T) { testBarriers(t, sh) })
	t.Run("throughput", func(t *testing.T) { testThroughput(t, sh) })
}

// testDiscarded records one request of a backlog as discarded at its
// origin (a divergence entry of kind discarded, as reship's rewind writes
// it) before the collector starts: it is acked and never applied, every
// other request is applied once.
func testDiscarded(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	evs := m.workload(&gen{origin: dcA1, server: 11}, 40, 10000, 9)
	lost := evs[len(evs)-1] // the last: nothing later depends on its rows
	created, err := divergence.Record(t.Context(), b.st, divergence.Entry{
		Origin: dcA1, RequestID: lost.GetRequestId(), GTID: lost.GetGtid(), Keyspace: keyspace, Shard: lost.GetShard(),
		Kind: divergence.KindDiscarded, FailoverID: "fo-1", DetectedBy: "reship@" + dcA1, DetectedAt: time.Now().UTC(),
	})
	require.NoError(t, err)
	require.True(t, created)
	b.publish(evs...)
	r := b.start(nil, nil)
	b.waitDrained(len(evs), waitLong)
	assert.EqualValues(t, len(evs)-1, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.EqualValues(t, 0, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable+" WHERE request_id = ?", lost.GetRequestId()),
		"the discarded request was applied")
	assert.EqualValues(t, len(evs)-1, r.counter("drplane_collector_applied_total"))
	assert.EqualValues(t, 1, r.counter("drplane_collector_diverged_total"))
	entries, err := divergence.List(t.Context(), b.st, dcA1)
	require.NoError(t, err)
	require.Len(t, entries, 1, "refused, not recorded again")
}

func testApplies(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	ga, gb := &gen{origin: dcA1, server: 11}, &gen{origin: dcA2, server: 21}
	evA := m.workload(ga, 150, 10000, 1)
	evB := m.workload(gb, 150, 50000, 2)
	r := b.start(func(o *apply.Options) { o.BatchSize = 64 }, nil)
	b.publish(evA[:75]...)
	b.publish(evB...)
	b.publish(evA[75:]...)
	n := len(evA) + len(evB)
	b.waitDrained(n, waitLong)

	requireModel(t, b.app, m)
	assert.Equal(t, m.ops, scalar(t, b.app, "SELECT n FROM apply_count"), "row operations applied exactly once each")
	assert.EqualValues(t, n, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.EqualValues(t, len(evA), scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable+" WHERE origin_dc = ?", dcA1))
	assert.EqualValues(t, n, r.counter("drplane_collector_applied_total"))
	assert.EqualValues(t, n, r.counter("drplane_collector_lag_seconds"), "one lag sample per request")

	// The local replica applies the collector's transactions.
	sh.db.WaitReplicas(waitLong)
	requireModel(t, sh.db.AppDB(sh.db.Replicas[0]), m)

	// Watermarks: the last request of every origin and shard.
	want := map[string]*drplanev1.ChangeEvent{}
	for _, ev := range append(append([]*drplanev1.ChangeEvent{}, evA...), evB...) {
		want[apply.WatermarkKey(b.st, dcB1, ev.GetOriginDc(), ev.GetKeyspace(), ev.GetShard())] = ev
	}
	check.For(t, waitLong, poll, func() error {
		resp, err := sh.cli.Get(t.Context(), b.st.Prefix("watermarks", dcB1), clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != len(want) {
			return check.That(false, "watermarks name each shard's last request")
		}
		for _, kv := range resp.Kvs {
			var w apply.Watermark
			ev := want[string(kv.Key)]
			if json.Unmarshal(kv.Value, &w) != nil || ev == nil || w.RequestID != ev.GetRequestId() {
				return check.That(false, "watermarks name each shard's last request")
			}
		}
		return nil
	})
	last := evA[len(evA)-1]
	w, _, err := state.Get[apply.Watermark](t.Context(), b.st, apply.WatermarkKey(b.st, dcB1, dcA1, keyspace, last.GetShard()))
	require.NoError(t, err)
	assert.Equal(t, last.GetGtid(), w.GTID)
	assert.Equal(t, last.GetPosition(), w.Position)
	assert.True(t, w.CommitTime.Equal(last.GetCommitTime().AsTime()))
	assert.False(t, w.AppliedAt.Before(w.CommitTime))

	// Statistics per origin, on the lease.
	check.For(t, waitLong, poll, func() error {
		s, _, err := state.Get[apply.Stats](t.Context(), b.st, apply.StatsKey(b.st, dcB1, dcA1))
		if err != nil {
			return err
		}
		return check.That(s.Applied == uint64(len(evA)) && s.Pending == 0 && s.LagP99Ms > 0, "stats of %s", dcA1)
	})
	resp, err := sh.cli.Get(t.Context(), apply.StatsKey(b.st, dcB1, dcA2))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Equal(t, int64(b.lease), resp.Kvs[0].Lease, "stats live on the process lease")

	// One APPLIED ledger fact per request.
	check.For(t, waitLong, poll, func() error { return check.That(b.streamMsgs(embednats.LedgerStream(dcB1)) == n, "ledger facts") })
	s, err := b.js[dcB1].Stream(t.Context(), embednats.LedgerStream(dcB1))
	require.NoError(t, err)
	raw, err := s.GetLastMsgForSubject(t.Context(), embednats.LedgerSubject(dcB1)+".applied")
	require.NoError(t, err)
	var fact drplanev1.LedgerUpdate
	require.NoError(t, proto.Unmarshal(raw.Data, &fact))
	assert.Equal(t, drplanev1.LedgerUpdate_KIND_APPLIED, fact.GetKind())
	assert.Equal(t, dcB1, fact.GetDc())
	assert.NotEmpty(t, fact.GetRequestId())
}

func testDuplicateDelivery(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	evs := m.workload(&gen{origin: dcA1, server: 11}, 300, 10000, 3)
	r := b.start(func(o *apply.Options) { o.DuplicateDelivery = true; o.BatchSize = 50 }, nil)
	b.publish(evs...)
	b.waitDrained(2*len(evs), waitLong)

	requireModel(t, b.app, m)
	assert.Equal(t, m.ops, scalar(t, b.app, "SELECT n FROM apply_count"), "each request applied once")
	assert.EqualValues(t, len(evs), scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.EqualValues(t, len(evs), r.counter("drplane_collector_applied_total"))
	assert.EqualValues(t, len(evs), r.counter("drplane_collector_duplicates_total"), "every copy skipped")
}

var errCrash = errors.New("simulated crash")

func testCrashAfterCommit(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	evs := m.workload(&gen{origin: dcA1, server: 11}, 200, 10000, 4)
	b.publish(evs...)
	in := embednats.InStream(dcB1)
	check.For(t, waitLong, poll, func() error { return check.That(b.streamMsgs(in) == len(evs), "b.streamMsgs(in) == len(evs)") })

	batches := 0
	r1 := b.start(func(o *apply.Options) { o.BatchSize = 50; o.BatchWait = 50 * time.Millisecond }, func(a *apply.Applier) {
		apply.SetAfterCommit(a, func() error {
			if batches++; batches == 2 {
				return errCrash
			}
			return nil
		})
	})
	require.ErrorIs(t, r1.wait(t), errCrash)
	committed := scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable)
	c, err := b.js[dcB1].Consumer(t.Context(), in, apply.ConsumerName)
	require.NoError(t, err)
	acked := int64(c.CachedInfo().AckFloor.Stream)
	t.Logf("stopped with %d requests committed, %d acked", committed, acked)
	require.Greater(t, committed, acked, "the second batch is committed and not acked")
	require.Less(t, committed, int64(len(evs)))

	r2 := b.start(func(o *apply.Options) { o.BatchSize = 50 }, nil)
	b.waitDrained(len(evs), waitLong)
	requireModel(t, b.app, m)
	assert.Equal(t, m.ops, scalar(t, b.app, "SELECT n FROM apply_count"), "no request applied twice")
	assert.EqualValues(t, len(evs), scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable), "no request lost")
	assert.EqualValues(t, committed-acked, r2.counter("drplane_collector_duplicates_total"),
		"the committed, unacked batch came again and was skipped")
	assert.EqualValues(t, int64(len(evs))-committed, r2.counter("drplane_collector_applied_total"))
}

func testPoison(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	g := &gen{origin: dcA1, server: 11}
	good1 := m.workload(g, 20, 10000, 5)
	unknownTable := g.event(1, "nosuch", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
		Key: []*drplanev1.Column{col("id", int64(1))}, After: []*drplanev1.Column{col("id", int64(1))}})
	nullAmount := g.event(2, "orders", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
		Key:   []*drplanev1.Column{col("id", int64(999999))},
		After: []*drplanev1.Column{col("id", int64(999999)), col("user_id", int64(1)), col("amount_cents", nil)}})
	unknownKeyspace := g.event(3, "orders", m.insertOrder(orderRow{ID: 999998, User: 1, Amount: 1}))
	delete(m.orders, 999998)
	m.ops--
	unknownKeyspace.Keyspace = "nope"
	wrongSchema := g.event(4, "user", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_DELETE,
		Key: []*drplanev1.Column{col("User", "root")}})
	wrongSchema.Schema = "mysql"
	// A forged dedup row would mark a request as applied that never was.
	ownTable := g.event(5, apply.DedupTable, &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
		Key:   []*drplanev1.Column{col("origin_dc", dcA1), col("request_id", "forged")},
		After: []*drplanev1.Column{col("origin_dc", dcA1), col("request_id", "forged"), col("gtid", "0-1-1")}})
	// A table of the database outside the keyspace: the counter the
	// triggers keep would be overwritten.
	foreign := g.event(6, "apply_count", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE,
		Key:   []*drplanev1.Column{col("id", int64(1))},
		After: []*drplanev1.Column{col("id", int64(1)), col("n", int64(0))}})
	good2 := m.workload(g, 20, 20000, 6)
	poisons := map[string]string{ // request id → error text expected
		"garbage-1":                    "undecodable",
		unknownTable.GetRequestId():    "1146",
		nullAmount.GetRequestId():      "1048",
		unknownKeyspace.GetRequestId(): "unknown keyspace",
		wrongSchema.GetRequestId():     "schema",
		ownTable.GetRequestId():        "drplane's own",
		foreign.GetRequestId():         `table "apply_count" is not a table of keyspace`,
	}

	r := b.start(func(o *apply.Options) {
		o.MaxRedeliveries = 1
		o.BatchSize = 100
		o.BatchWait = 100 * time.Millisecond
	}, nil)
	b.publish(good1...)
	b.publishRaw(dcA1, dcA1+":garbage-1", []byte{0xff, 0x01, 0x02, 0x03})
	b.publish(unknownTable, nullAmount, unknownKeyspace, wrongSchema, ownTable, foreign)
	b.publish(good2...)
	total := len(good1) + len(good2) + len(poisons)
	b.waitDrained(total, waitLong)

	requireModel(t, b.app, m)
	assert.Equal(t, m.ops, scalar(t, b.app, "SELECT n FROM apply_count"))
	assert.EqualValues(t, len(good1)+len(good2), scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.EqualValues(t, len(poisons), r.counter("drplane_collector_dead_letters_total"))

	// The dead letters, with the original payload and the error in headers.
	dlq, err := b.js[dcB1].Stream(t.Context(), embednats.DLQStream(dcB1))
	require.NoError(t, err)
	info, err := dlq.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, len(poisons), info.State.Msgs)
	seen := map[string]bool{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		msg, err := dlq.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		rid := msg.Header.Get(apply.HeaderRequestID)
		want, ok := poisons[rid]
		require.True(t, ok, "unexpected dead letter %q", rid)
		seen[rid] = true
		assert.Contains(t, msg.Header.Get(apply.HeaderError), want, rid)
		assert.Equal(t, dcA1, msg.Header.Get(apply.HeaderOrigin))
		assert.Equal(t, embednats.DLQSubject(dcB1)+"."+dcA1, msg.Subject)
		assert.True(t, strings.HasPrefix(msg.Header.Get(apply.HeaderSubject), embednats.OutSubject(dcA1)+"."))
		assert.NotEqual(t, "0", msg.Header.Get(apply.HeaderSequence))
		if rid == "garbage-1" {
			assert.Equal(t, []byte{0xff, 0x01, 0x02, 0x03}, msg.Data)
		} else {
			var ev drplanev1.ChangeEvent
			require.NoError(t, proto.Unmarshal(msg.Data, &ev))
			assert.Equal(t, rid, ev.GetRequestId())
		}
	}
	assert.Len(t, seen, len(poisons))

	// Audited through the etcd outbox.
	evs, err := audit.NewOutbox(b.st).List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, len(poisons))
	for _, ev := range evs {
		assert.Equal(t, apply.AuditAction, ev.Action)
		assert.Equal(t, audit.OutcomeFailed, ev.Outcome)
		assert.Contains(t, poisons, ev.Params["request_id"])
		assert.Equal(t, dcA1+":"+ev.Params["request_id"], ev.Target)
		assert.NotEmpty(t, ev.Error)
	}

	// Reported to the ledger.
	led, err := b.js[dcB1].Stream(t.Context(), embednats.LedgerStream(dcB1))
	require.NoError(t, err)
	subj := embednats.LedgerSubject(dcB1) + ".dead_lettered"
	check.For(t, waitLong, poll, func() error {
		li, err := led.Info(t.Context(), jetstream.WithSubjectFilter(subj))
		if err != nil {
			return err
		}
		return check.That(li.State.Subjects[subj] == uint64(len(poisons)), "dead-letter ledger facts")
	})

	// The stream keeps flowing.
	good3 := m.workload(g, 10, 30000, 7)
	b.publish(good3...)
	b.waitDrained(total+len(good3), waitLong)
	requireModel(t, b.app, m)
}

func testTransient(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	r := b.start(nil, nil)
	admin := sh.db.AdminDB(sh.db.Master)
	_, err := admin.ExecContext(t.Context(), "SET GLOBAL read_only = 1")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "SET GLOBAL read_only = 0") })

	evs := m.workload(&gen{origin: dcA1, server: 11}, 30, 10000, 8)
	b.publish(evs...)
	check.For(t, waitLong, poll, func() error {
		return check.That(r.counter("drplane_collector_retries_total") >= 3, "the collector retries while the master is read-only")
	})
	assert.Zero(t, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.Equal(t, 0, b.streamMsgs(embednats.DLQStream(dcB1)))

	_, err = admin.ExecContext(t.Context(), "SET GLOBAL read_only = 0")
	require.NoError(t, err)
	b.waitDrained(len(evs), waitLong)
	requireModel(t, b.app, m)
	assert.Equal(t, 0, b.streamMsgs(embednats.DLQStream(dcB1)), "transient errors are never dead-lettered")
	assert.Zero(t, r.counter("drplane_collector_dead_letters_total"))
}

// testNATSRestart restarts dc-b1's NATS server while the collector applies
// small batches: deliveries in flight are lost and come again later; the
// result must still be every request once, in order (the workload updates
// the same rows again and again, so order shows in the final state).
func testNATSRestart(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	m := newModel()
	evs := m.workload(&gen{origin: dcA1, server: 11}, 1500, 10000, 10)
	b.publish(evs...)
	check.For(t, waitLong, poll, func() error {
		return check.That(b.streamMsgs(embednats.InStream(dcB1)) == len(evs), "b.streamMsgs(embednats.InStream(dcB1)) = %v, want len(evs)", b.streamMsgs(embednats.InStream(dcB1)))
	})

	r := b.start(func(o *apply.Options) { o.BatchSize = 10; o.BatchWait = time.Millisecond }, nil)
	check.For(t, waitLong, 2*time.Millisecond, func() error {
		return check.That(scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable) >= 200, "scalar(t, b.app, \"SELECT COUNT(*) FROM \"+apply.DedupTable) = %v, want >= 200", scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	})
	require.NoError(t, b.mesh.Stop(dcB1))
	stopped := scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable)
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	require.NoError(t, b.mesh.Restart(ctx, dcB1))
	b.waitDrained(len(evs), waitLong)
	t.Logf("NATS restarted after %d of %d requests; %.0f retries or resets", stopped, len(evs),
		r.counter("drplane_collector_retries_total"))
	require.Less(t, stopped, int64(len(evs)), "the restart happened while applying")
	requireModel(t, b.app, m)
	assert.Equal(t, m.ops, scalar(t, b.app, "SELECT n FROM apply_count"), "no request applied twice")
	assert.EqualValues(t, len(evs), scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
}

// testBigBatchDuplicate applies 1,001 requests in one batch, the last of
// which was applied before (its dedup row exists): the dedup rows go in
// statements of 1,000, so the duplicate is in the second one, and the
// first statement's rows must still count as applied now.
func testBigBatchDuplicate(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	g := &gen{origin: dcA1, server: 11}
	const n = 1001
	evs := make([]*drplanev1.ChangeEvent, n)
	for i := range evs {
		o := orderRow{ID: int64(i + 1), User: int64(i % 50), Amount: int64(i)}
		evs[i] = g.event(int32(i%8), "bench", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
			Key: []*drplanev1.Column{col("id", o.ID)}, After: o.cols()})
	}
	last := evs[n-1]
	admin := sh.db.AdminDB(sh.db.Master)
	_, err := admin.ExecContext(t.Context(), apply.DedupDDL(database))
	require.NoError(t, err)
	_, err = admin.ExecContext(t.Context(), "INSERT INTO "+database+"."+apply.DedupTable+" (origin_dc, request_id, gtid) VALUES (?,?,?)",
		last.GetOriginDc(), last.GetRequestId(), last.GetGtid())
	require.NoError(t, err)
	b.publish(evs...)
	require.Eventually(t, func() bool { return b.streamMsgs(embednats.InStream(dcB1)) == n }, waitLong, poll)

	r := b.start(func(o *apply.Options) { o.BatchSize = 2000; o.BatchWait = 2 * time.Second }, nil)
	b.waitDrained(n, waitLong)
	assert.EqualValues(t, 1, r.counter("drplane_collector_batch_size"), "one batch")
	assert.EqualValues(t, n-1, scalar(t, b.app, "SELECT COUNT(*) FROM bench"), "every request but the one applied before")
	assert.EqualValues(t, n, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
	assert.EqualValues(t, n-1, r.counter("drplane_collector_applied_total"))
	assert.EqualValues(t, 1, r.counter("drplane_collector_duplicates_total"))
}

func testThroughput(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	g := &gen{origin: dcA1, server: 11}
	const n = 20000
	note := "a note of some thirty characters"
	evs := make([]*drplanev1.ChangeEvent, n)
	for i := range evs {
		o := orderRow{ID: int64(i + 1), User: int64(i % 50), Amount: int64(i), Note: &note}
		evs[i] = g.event(int32(i%8), "bench", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
			Key: []*drplanev1.Column{col("id", o.ID)}, After: o.cols()})
	}
	b.publish(evs...)
	check.For(t, waitLong, poll, func() error {
		return check.That(b.streamMsgs(embednats.InStream(dcB1)) == n, "b.streamMsgs(embednats.InStream(dcB1)) = %v, want n", b.streamMsgs(embednats.InStream(dcB1)))
	})

	began := time.Now()
	r := b.start(nil, nil)
	b.waitDrained(n, 60*time.Second)
	took := time.Since(began)
	batches := r.counter("drplane_collector_batch_size")
	t.Logf("applied %d single-row requests in %v: %.0f rows/s; %.0f batches of %.0f on average, %.1f ms each",
		n, took.Round(time.Millisecond), n/took.Seconds(), batches, r.histSum("drplane_collector_batch_size")/batches,
		1000*r.histSum("drplane_collector_batch_seconds")/batches)
	assert.EqualValues(t, n, scalar(t, b.app, "SELECT COUNT(*) FROM bench"))
	assert.EqualValues(t, n, scalar(t, b.app, "SELECT COUNT(*) FROM "+apply.DedupTable))
}

// testOrderingGuard: a request that arrives after newer changes of the same
// origin to its rows (a retried dead letter, a late republish) does not
// roll those rows back: its changes to them are skipped and counted, its
// changes to other rows are applied. A change from another origin is not
// ordered against them (a handoff's barrier orders origins).
func testOrderingGuard(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	g := &gen{origin: dcA1, server: 11}
	note := func(s string) *string { return &s }
	old := g.event(0, "orders",
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{col("id", int64(1))},
			After: orderRow{ID: 1, User: 8, Amount: 100, Note: note("old")}.cols()},
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{col("id", int64(2))},
			After: orderRow{ID: 2, User: 8, Amount: 200, Note: note("old")}.cols()},
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{col("id", int64(3))},
			After: orderRow{ID: 3, User: 8, Amount: 300, Note: note("old")}.cols()})
	newer := g.event(0, "orders",
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{col("id", int64(1))},
			Before: orderRow{ID: 1, User: 8, Amount: 100, Note: note("old")}.cols(),
			After:  orderRow{ID: 1, User: 8, Amount: 101, Note: note("new")}.cols()})
	deleted := g.event(0, "orders",
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_DELETE, Key: []*drplanev1.Column{col("id", int64(2))},
			Before: orderRow{ID: 2, User: 8, Amount: 200, Note: note("old")}.cols()})
	r := b.start(nil, nil)
	b.publish(newer, deleted)
	b.waitDrained(2, waitLong)
	b.publish(old) // the oldest change of the three comes last
	b.waitDrained(3, waitLong)

	noteOf := func(id int64) string {
		var n sql.NullString
		err := b.app.QueryRowContext(t.Context(), "SELECT note FROM orders WHERE id = ?", id).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return "(none)"
		}
		require.NoError(t, err)
		return n.String
	}
	assert.Equal(t, "new", noteOf(1), "the newer update stays")
	assert.Equal(t, "(none)", noteOf(2), "the deleted row stays deleted")
	assert.Equal(t, "old", noteOf(3), "a row no newer change touched is applied")
	assert.EqualValues(t, 2, r.counter("drplane_collector_stale_rows_total"))
	assert.EqualValues(t, 3, r.counter("drplane_collector_applied_total"), "the late request is applied (its other rows) and acked")

	// Another origin's change is not ordered against dc-a1's.
	other := (&gen{origin: dcA2, server: 21}).event(0, "orders",
		&drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{col("id", int64(1))},
			Before: orderRow{ID: 1, User: 8, Amount: 101, Note: note("new")}.cols(),
			After:  orderRow{ID: 1, User: 8, Amount: 102, Note: note("from a2")}.cols()})
	b.publish(other)
	b.waitDrained(4, waitLong)
	assert.Equal(t, "from a2", noteOf(1))
	assert.EqualValues(t, 2, r.counter("drplane_collector_stale_rows_total"))
}
