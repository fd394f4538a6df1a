package ledger_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
)

// TestIndexerFactsInAnyOrder publishes facts to the three DCs' ledger
// streams in orders where the applies come before the capture, and checks
// every document the indexer builds.
func TestIndexerFactsInAnyOrder(t *testing.T) {
	e := newEnv(t)
	l := e.start(t, dcA2, "coord-a2", ledger.Config{ReconcileEvery: time.Hour})
	now := time.Now().UTC().Truncate(time.Millisecond)
	applied := drplanev1.LedgerUpdate_KIND_APPLIED

	// r1: applied in both targets before its capture is reported.
	e.publish(t, fact(applied, dcA1, "1-1-1/7", dcB1, now.Add(20*time.Millisecond), ""))
	e.publish(t, fact(applied, dcA1, "1-1-1/7", dcA2, now.Add(10*time.Millisecond), ""))
	d := lookup(t, l, dcA1, "1-1-1/7", func(d *ledger.Document) bool { return len(d.AppliedDCs) == 2 })
	assert.Equal(t, ledger.StatePending, d.State, "applied everywhere, but the targets are not known yet")
	assert.True(t, d.CapturedAt.IsZero())
	e.publish(t, capturedFact(dcA1, "1-1-1/7", now, 41, others(dcA1)...))
	d = lookup(t, l, dcA1, "1-1-1/7", func(d *ledger.Document) bool { return d.State == ledger.StateApplied })
	assert.Equal(t, now, d.CapturedAt)
	assert.Equal(t, []string{dcA2, dcB1}, d.Targets)
	assert.Equal(t, uint64(41), d.OutboundSeq)
	assert.Empty(t, d.PendingDCs)
	assert.Equal(t, now.Add(20*time.Millisecond), d.AppliedAt[dcB1])

	// r2: dead-lettered in dc-b1 (reported before the capture), applied in
	// dc-a2.
	e.publish(t, fact(drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, dcA1, "2-1-2/7", dcB1, now.Add(time.Second), "unknown column 'note'"))
	e.publish(t, capturedFact(dcA1, "2-1-2/7", now, 42, others(dcA1)...))
	e.publish(t, fact(applied, dcA1, "2-1-2/7", dcA2, now.Add(10*time.Millisecond), ""))
	d = lookup(t, l, dcA1, "2-1-2/7", func(d *ledger.Document) bool {
		return len(d.AppliedDCs) == 1 && d.CapturedAt.Equal(now) && len(d.DeadLettered) == 1
	})
	assert.Equal(t, ledger.StateDeadLettered, d.State)
	assert.Equal(t, []string{dcB1}, d.DeadLetteredDCs)
	assert.Equal(t, "dc-b1: unknown column 'note'", d.Error)
	rec := d.Record()
	require.Len(t, rec.GetTargetStatus(), 2)
	assert.Equal(t, "unknown column 'note'", rec.GetTargetStatus()[1].GetError())

	// r3: captured in dc-b1, applied only in dc-a1 so far.
	e.publish(t, fact(applied, dcB1, "3-2-3/7", dcA1, now.Add(5*time.Millisecond), ""))
	e.publish(t, capturedFact(dcB1, "3-2-3/7", now, 5, others(dcB1)...))
	d = lookup(t, l, dcB1, "3-2-3/7", func(d *ledger.Document) bool { return !d.CapturedAt.IsZero() && len(d.AppliedDCs) == 1 })
	assert.Equal(t, ledger.StatePending, d.State)
	assert.Equal(t, []string{dcA2}, d.PendingDCs)
	un, total, err := l.Unapplied(t.Context(), dcB1, dcA2, 10)
	require.NoError(t, err)
	assert.Equal(t, int64(1), total)
	require.Len(t, un, 1, "pending at dc-a2")
	assert.Equal(t, "3-2-3/7", un[0].RequestID)
	un, total, err = l.Unapplied(t.Context(), dcB1, dcA1, 10)
	require.NoError(t, err)
	assert.Zero(t, total, "applied at dc-a1")
	assert.Empty(t, un)

	// Undecodable facts are skipped; the stream keeps flowing.
	_, err = e.js[dcA1].Publish(t.Context(), embednats.LedgerSubject(dcA1)+".captured", []byte("\xff not a fact"))
	require.NoError(t, err)
	e.publish(t, fact(applied, dcB1, "3-2-3/7", dcA2, now.Add(time.Second), ""))
	lookup(t, l, dcB1, "3-2-3/7", func(d *ledger.Document) bool { return d.State == ledger.StateApplied })

	// Backlog: dc-a1 has one dead-lettered request, dc-b1 none left.
	b, err := l.Backlog(t.Context(), dcA1)
	require.NoError(t, err)
	assert.Equal(t, ledger.Backlog{DC: dcA1, DeadLettered: 1}, b)
	un, total, err = l.Unapplied(t.Context(), dcA1, dcB1, 10)
	require.NoError(t, err)
	assert.Equal(t, int64(1), total, "dead-lettered at dc-b1: not applied")
	require.Len(t, un, 1)
	assert.Equal(t, "2-1-2/7", un[0].RequestID)
	un, _, err = l.Unapplied(t.Context(), dcA1, dcB1, 0)
	require.NoError(t, err)
	assert.Empty(t, un, "limit 0 lists none")
	b, err = l.Backlog(t.Context(), dcB1)
	require.NoError(t, err)
	assert.Zero(t, b.Pending+b.DeadLettered)

	assert.InDelta(t, 2, counter(t, l, "drplane_ledger_facts_indexed_total", dcA1, "captured"), 0)
	n, err := testutil.GatherAndCount(l.reg, "drplane_ledger_index_lag_seconds")
	require.NoError(t, err)
	assert.Equal(t, 3, n, "an index lag per DC")
	check.For(t, waitFor, tick, func() error {
		return check.That(counter(t, l, "drplane_ledger_errors_total", "decode") == 1, "counter(t, l, \"drplane_ledger_errors_total\", \"decode\") = %v, want 1", counter(t, l, "drplane_ledger_errors_total", "decode"))
	})
}

// TestIndexerResumesAfterDCOutage stops a DC whose ledger the indexer
// follows, publishes while it is down (elsewhere) and after it returns.
func TestIndexerResumesAfterDCOutage(t *testing.T) {
	e := newEnv(t)
	l := e.start(t, dcA1, "coord-a1", ledger.Config{ReconcileEvery: time.Hour})
	now := time.Now().UTC()
	e.publish(t, capturedFact(dcB1, "1-9-1/7", now, 1, dcA1, dcA2))
	lookup(t, l, dcB1, "1-9-1/7", func(d *ledger.Document) bool { return !d.CapturedAt.IsZero() })

	require.NoError(t, e.mesh.Stop(dcB1))
	e.publish(t, fact(drplanev1.LedgerUpdate_KIND_APPLIED, dcB1, "1-9-1/7", dcA2, now.Add(time.Millisecond), ""))
	lookup(t, l, dcB1, "1-9-1/7", func(d *ledger.Document) bool { return len(d.AppliedDCs) == 1 })

	require.NoError(t, e.mesh.Restart(t.Context(), dcB1))
	// The facts dc-b1 reports after its return reach the index.
	e.publish(t, capturedFact(dcB1, "2-9-2/7", now, 2, dcA1, dcA2))
	lookup(t, l, dcB1, "2-9-2/7", func(d *ledger.Document) bool { return !d.CapturedAt.IsZero() })
}

// republisher answers reship's republish requests of dc as a test stand-in.
type republisher struct {
	mu    sync.Mutex
	asked [][]uint64
	fail  map[uint64]string
}

func (r *republisher) requests() [][]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

func serveRepublish(t *testing.T, nc *nats.Conn, dc string, fail map[uint64]string) *republisher {
	t.Helper()
	r := &republisher{fail: fail}
	sub, err := nc.Subscribe(ledger.RepublishSubject(dc), func(m *nats.Msg) {
		var seqs []uint64
		if err := json.Unmarshal(m.Data, &seqs); err != nil {
			_ = m.Respond([]byte(`{"error":"bad request"}`))
			return
		}
		r.mu.Lock()
		r.asked = append(r.asked, seqs)
		r.mu.Unlock()
		type ok struct {
			Seq    uint64 `json:"seq"`
			NewSeq uint64 `json:"new_seq"`
		}
		type bad struct {
			Seq   uint64 `json:"seq"`
			Error string `json:"error"`
		}
		reply := struct {
			Republished []ok  `json:"republished"`
			Failed      []bad `json:"failed,omitempty"`
		}{Republished: []ok{}}
		for _, s := range seqs {
			if msg, f := fail[s]; f {
				reply.Failed = append(reply.Failed, bad{Seq: s, Error: msg})
				continue
			}
			reply.Republished = append(reply.Republished, ok{Seq: s, NewSeq: 1000 + s})
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

func TestReconcilerRetriesStuckRequests(t *testing.T) {
	e := newEnv(t)
	l := e.start(t, dcA1, "coord-a1", ledger.Config{RetryAfter: time.Minute, ReconcileEvery: time.Hour, MaxAttempts: 2})
	old := time.Now().UTC().Add(-5 * time.Minute)
	applied := drplanev1.LedgerUpdate_KIND_APPLIED

	// Stuck: captured long ago, applied in dc-a2 only.
	e.publish(t, capturedFact(dcA1, "1-1-10/7", old, 10, dcA2, dcB1))
	e.publish(t, fact(applied, dcA1, "1-1-10/7", dcA2, old.Add(time.Millisecond), ""))
	// Done: applied everywhere.
	e.publish(t, capturedFact(dcA1, "1-1-11/7", old, 11, dcA2, dcB1))
	e.publish(t, fact(applied, dcA1, "1-1-11/7", dcA2, old.Add(time.Millisecond), ""))
	e.publish(t, fact(applied, dcA1, "1-1-11/7", dcB1, old.Add(time.Millisecond), ""))
	// Too young to retry.
	e.publish(t, capturedFact(dcA1, "1-1-12/7", time.Now().UTC(), 12, dcA2, dcB1))
	// Dead-lettered in its only missing target: left to the operator.
	e.publish(t, capturedFact(dcA1, "1-1-13/7", old, 13, dcA2, dcB1))
	e.publish(t, fact(applied, dcA1, "1-1-13/7", dcA2, old.Add(time.Millisecond), ""))
	e.publish(t, fact(drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, dcA1, "1-1-13/7", dcB1, old.Add(time.Second), "constraint"))
	// Stuck, but captured in another DC: that DC's coordinator retries it.
	e.publish(t, capturedFact(dcA2, "2-2-20/7", old, 20, dcA1, dcB1))
	// Stuck, and reship cannot republish it.
	e.publish(t, capturedFact(dcA1, "1-1-14/7", old, 14, dcA2, dcB1))
	for _, rid := range []string{"1-1-10/7", "1-1-11/7", "1-1-12/7", "1-1-13/7", "1-1-14/7"} {
		lookup(t, l, dcA1, rid, func(d *ledger.Document) bool { return !d.CapturedAt.IsZero() })
	}
	lookup(t, l, dcA1, "1-1-11/7", func(d *ledger.Document) bool { return d.State == ledger.StateApplied })
	lookup(t, l, dcA1, "1-1-13/7", func(d *ledger.Document) bool { return d.State == ledger.StateDeadLettered })
	lookup(t, l, dcA2, "2-2-20/7", func(d *ledger.Document) bool { return !d.CapturedAt.IsZero() })

	// Without a reship answering, a round fails and records nothing.
	r, err := l.Reconcile(t.Context())
	require.Error(t, err)
	assert.Equal(t, 2, r.Due)
	assert.InDelta(t, 2, counter(t, l, "drplane_ledger_retries_total", "unanswered"), 0)
	d := lookup(t, l, dcA1, "1-1-10/7", func(*ledger.Document) bool { return true })
	assert.Zero(t, d.Attempts)

	rep := serveRepublish(t, l.nc, dcA1, map[uint64]string{14: "message not found"})
	start := time.Now()
	r, err = l.Reconcile(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"1-1-10/7"}, r.Republished)
	assert.Equal(t, []string{"1-1-14/7"}, r.Failed)
	assert.Equal(t, [][]uint64{{10, 14}}, rep.requests(), "one request with the stuck requests' outbound sequences")

	d = lookup(t, l, dcA1, "1-1-10/7", func(d *ledger.Document) bool { return d.Attempts == 1 })
	assert.False(t, d.LastRetryAt.Before(start.Truncate(time.Millisecond)), "last retry %s", d.LastRetryAt)
	assert.Equal(t, d.LastRetryAt, d.LastAttemptAt)
	assert.Equal(t, ledger.StatePending, d.State)
	d = lookup(t, l, dcA1, "1-1-14/7", func(*ledger.Document) bool { return true })
	assert.Zero(t, d.Attempts, "a request reship did not republish is not counted as retried")

	// The round is audited.
	evs, err := audit.NewOutbox(e.st).List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	ev := evs[0]
	assert.Equal(t, ledger.ActionRetry, ev.Action)
	assert.Equal(t, "coordinator:coord-a1", ev.Actor)
	assert.Equal(t, dcA1, ev.Target)
	assert.Equal(t, audit.OutcomeFailed, ev.Outcome)
	assert.Contains(t, ev.Error, "seq 14: message not found")
	assert.Equal(t, "1-1-10/7,1-1-14/7", ev.Params["request_ids"])
	assert.Equal(t, "1", ev.Params["republished"])
	assert.Equal(t, "10-14 (2)", ev.Params["outbound_seqs"])

	// The retry is reported on dc-a1's ledger stream for the other
	// coordinators.
	stream, err := e.js[dcA1].Stream(t.Context(), embednats.LedgerStream(dcA1))
	require.NoError(t, err)
	raw, err := stream.GetLastMsgForSubject(t.Context(), embednats.LedgerSubject(dcA1)+".retried")
	require.NoError(t, err)
	var u drplanev1.LedgerUpdate
	require.NoError(t, proto.Unmarshal(raw.Data, &u))
	assert.Equal(t, drplanev1.LedgerUpdate_KIND_RETRIED, u.GetKind())
	assert.Equal(t, "1-1-10/7", u.GetRequestId())
	assert.Equal(t, uint64(10), u.GetOutboundSeq())

	// The next round leaves the retried request alone until RetryAfter
	// passes again; the failed one is asked for again.
	r, err = l.Reconcile(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"1-1-14/7"}, r.Failed)
	assert.Empty(t, r.Republished)

	// Its RETRIED fact, indexed from the stream, counts once.
	check.For(t, waitFor, tick, func() error {
		return check.That(counter(t, l, "drplane_ledger_facts_indexed_total", dcA1, "retried") == 1, "counter(t, l, \"drplane_ledger_facts_indexed_total\", dcA1, \"retried\") = %v, want 1", counter(t, l, "drplane_ledger_facts_indexed_total", dcA1, "retried"))
	})
	d = lookup(t, l, dcA1, "1-1-10/7", func(*ledger.Document) bool { return true })
	assert.Equal(t, 1, d.Attempts)
	assert.InDelta(t, 1, counter(t, l, "drplane_ledger_retries_total", "republished"), 0)
}

// TestReconcilerRunsOnItsOwn lets Run's timer drive the reconciler.
func TestReconcilerRunsOnItsOwn(t *testing.T) {
	e := newEnv(t)
	l := e.start(t, dcB1, "coord-b1", ledger.Config{RetryAfter: time.Minute, ReconcileEvery: 100 * time.Millisecond})
	rep := serveRepublish(t, l.nc, dcB1, nil)
	e.publish(t, capturedFact(dcB1, "5-3-1/7", time.Now().Add(-time.Hour), 77, dcA1, dcA2))
	check.For(t, waitFor, tick, func() error { return check.That(len(rep.requests()) > 0, "len(rep.requests()) > 0") })
	assert.Equal(t, []uint64{77}, rep.requests()[0])
	lookup(t, l, dcB1, "5-3-1/7", func(d *ledger.Document) bool { return d.Attempts == 1 })
	check.For(t, waitFor, tick, func() error {
		return check.That(counter(t, l, "drplane_ledger_backlog", dcB1, ledger.StatePending) == 1, "counter(t, l, \"drplane_ledger_backlog\", dcB1, ledger.StatePending) = %v, want 1", counter(t, l, "drplane_ledger_backlog", dcB1, ledger.StatePending))
	})
}

// counter reads one labelled series of a metric family.
func counter(t *testing.T, l *running, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := l.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, lp := range m.GetLabel() {
				vals = append(vals, lp.GetValue())
			}
			if strings.Join(vals, ",") != strings.Join(labels, ",") {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
