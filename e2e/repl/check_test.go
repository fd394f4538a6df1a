package repl

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
)

// marks are the last sequences of every DC's outbound and inbound streams
// at a point in time: the checks count what came after.
type marks struct {
	out, in map[string]uint64
}

// streamLast returns a stream's last sequence (0 when it does not exist
// yet).
func (b *bed) streamLast(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

// js returns the bed's JetStream context on dc's NATS server (its
// connection reconnects while the server is down).
func (b *bed) js(t testing.TB, dc string) jetstream.JetStream {
	t.Helper()
	b.jsMu.Lock()
	defer b.jsMu.Unlock()
	if js, ok := b.jsByDC[dc]; ok {
		return js
	}
	js := harness.JetStream(b.t, b.mesh, dc)
	b.jsByDC[dc] = js
	return js
}

// marks reads the current marks.
func (b *bed) marks(t testing.TB) marks {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := marks{out: map[string]uint64{}, in: map[string]uint64{}}
	for _, name := range dcNames() {
		js := b.js(t, name)
		var err error
		if m.out[name], err = b.streamLast(ctx, js, embednats.OutStream(name)); err != nil {
			t.Fatalf("%s: %v", embednats.OutStream(name), err)
		}
		if m.in[name], err = b.streamLast(ctx, js, embednats.InStream(name)); err != nil {
			t.Fatalf("%s: %v", embednats.InStream(name), err)
		}
	}
	return m
}

// outRequests returns the request ids of the messages origin's reship
// published to OUT_<origin> after the mark, in stream order, from their
// Nats-Msg-Id ("<origin>:<request-id>").
func (b *bed) outRequests(t testing.TB, origin string, from uint64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := b.js(t, origin)
	stream := embednats.OutStream(origin)
	last, err := b.streamLast(ctx, js, stream)
	if err != nil {
		t.Fatalf("%s: %v", stream, err)
	}
	if last <= from {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1, HeadersOnly: true,
	})
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	defer it.Stop()
	var ids []string
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("read %s up to %d: %v", stream, last, err)
		}
		id := msg.Headers().Get(jetstream.MsgIDHeader)
		rid, ok := strings.CutPrefix(id, origin+":")
		if !ok {
			t.Fatalf("%s: Nats-Msg-Id %q does not name the origin", stream, id)
		}
		ids = append(ids, rid)
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if meta.Sequence.Stream >= last {
			return ids
		}
	}
}

// dedupRows returns the request ids of origin in target's dedup table.
func (b *bed) dedupRows(ctx context.Context, target, origin string) ([]string, error) {
	rows, err := b.dcs[target].app().QueryContext(ctx, "SELECT request_id FROM "+dedupTable+" WHERE origin_dc = ?", origin)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// tableState is a DC's copy of shop.orders.
type tableState struct {
	rows     int64
	checksum int64
}

func (b *bed) tableState(ctx context.Context, dc string) (tableState, error) {
	db := b.dcs[dc].app()
	var st tableState
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&st.rows); err != nil {
		return st, err
	}
	var table string
	var sum sql.NullInt64
	if err := db.QueryRowContext(ctx, "CHECKSUM TABLE orders").Scan(&table, &sum); err != nil {
		return st, err
	}
	st.checksum = sum.Int64
	return st, nil
}

// requireConverged waits until every DC's shop.orders has the same row
// count and CHECKSUM TABLE, and every other DC's dedup table holds exactly
// the requests each origin published since m (each once: the dedup table's
// key is (origin_dc, request_id)). It fails the test with a row diff.
func (b *bed) requireConverged(t *testing.T, m marks, origins ...string) {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), waitConverge+30*time.Second)
	defer cancel()
	deadline := began.Add(waitConverge)
	var last string
	published := map[string][]string{}
	for {
		ok, why := b.converged(ctx, t, m, origins, published)
		if ok {
			t.Logf("converged %s after the load: %s", time.Since(began).Round(time.Millisecond), why)
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("DCs did not converge within %s: %s\n%s%s", waitConverge, last, b.diff(ctx), b.streamsInfo(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// converged makes one pass of requireConverged's checks.
func (b *bed) converged(ctx context.Context, t *testing.T, m marks, origins []string, published map[string][]string) (bool, string) {
	states := map[string]tableState{}
	for _, dc := range dcNames() {
		st, err := b.tableState(ctx, dc)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", dc, err)
		}
		states[dc] = st
	}
	ref := states[dcNames()[0]]
	for _, dc := range dcNames()[1:] {
		if states[dc] != ref {
			return false, fmt.Sprintf("tables differ: %+v", states)
		}
	}
	for _, origin := range origins {
		want := b.outRequests(t, origin, m.out[origin])
		sorted := slices.Clone(want)
		slices.Sort(sorted)
		if dup := slices.Compact(slices.Clone(sorted)); len(dup) != len(sorted) {
			t.Fatalf("OUT_%s holds a request twice (%d messages, %d distinct)", origin, len(sorted), len(dup))
		}
		published[origin] = want
		for _, target := range dcNames() {
			if target == origin {
				continue
			}
			got, err := b.dedupRows(ctx, target, origin)
			if err != nil {
				return false, fmt.Sprintf("%s dedup: %v", target, err)
			}
			slices.Sort(got)
			if !slices.Equal(got, sorted) {
				return false, fmt.Sprintf("%s has %d dedup rows of %s, %s published %d", target, len(got), origin, origin, len(sorted))
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d rows, checksum %d in every DC", ref.rows, ref.checksum)
	for _, o := range origins {
		fmt.Fprintf(&sb, "; %d requests of %s applied once in each other DC", len(published[o]), o)
	}
	return true, sb.String()
}

// diff describes how the DCs' tables differ from dc-a1's (for failures).
func (b *bed) diff(ctx context.Context) string {
	read := func(dc string) map[int64]string {
		out := map[int64]string{}
		rows, err := b.dcs[dc].app().QueryContext(ctx,
			"SELECT id, user_id, amount_cents, COALESCE(note, 'NULL'), UNIX_TIMESTAMP(updated_at) FROM orders")
		if err != nil {
			return out
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var id, uid, amount int64
			var note, at string
			if rows.Scan(&id, &uid, &amount, &note, &at) == nil {
				out[id] = fmt.Sprintf("%d/%d/%s/%s", uid, amount, note, at)
			}
		}
		return out
	}
	ref := read(dcA1)
	var sb strings.Builder
	for _, dc := range dcNames()[1:] {
		got := read(dc)
		var missing, extra, differ []int64
		for id, v := range ref {
			switch g, ok := got[id]; {
			case !ok:
				missing = append(missing, id)
			case g != v:
				differ = append(differ, id)
			}
		}
		for id := range got {
			if _, ok := ref[id]; !ok {
				extra = append(extra, id)
			}
		}
		fmt.Fprintf(&sb, "%s vs %s: %d missing %v, %d extra %v, %d different %v\n", dc, dcA1,
			len(missing), head(missing), len(extra), head(extra), len(differ), head(differ))
	}
	return sb.String()
}

func head(ids []int64) []int64 {
	slices.Sort(ids)
	if len(ids) > 10 {
		return ids[:10]
	}
	return ids
}

// requireRows checks that the origin's table holds exactly what the loads
// left there (every acknowledged insert not deleted, nothing deleted).
func (b *bed) requireRows(t *testing.T, dc string, results ...*loadResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	have := map[int64]bool{}
	rows, err := b.dcs[dc].app().QueryContext(ctx, "SELECT id FROM orders")
	if err != nil {
		t.Fatalf("%s: %v", dc, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	want := 0
	for _, r := range results {
		r.mu.Lock()
		for id := range r.live {
			if !have[id] {
				t.Errorf("%s: acknowledged row %d missing", dc, id)
			}
		}
		for id := range r.deleted {
			if have[id] {
				t.Errorf("%s: deleted row %d present", dc, id)
			}
		}
		want += len(r.live)
		r.mu.Unlock()
	}
	if len(have) != want {
		t.Errorf("%s holds %d rows, the loads left %d", dc, len(have), want)
	}
}

// requireNoEcho checks that each DC's reship published, since m, exactly
// the requests of the transactions written in that DC (loads[dc]; none for
// a DC without a load): nothing a collector applied was shipped again.
func (b *bed) requireNoEcho(t *testing.T, m marks, loads map[string][]*loadResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dc := range dcNames() {
		last, err := b.streamLast(ctx, b.js(t, dc), embednats.OutStream(dc))
		if err != nil {
			t.Fatal(err)
		}
		want, slack := 0, 0
		for _, r := range loads[dc] {
			r.mu.Lock()
			want += r.requests
			slack += r.uncertain
			r.mu.Unlock()
		}
		got := int(last - m.out[dc])
		if got < want || got > want+slack {
			t.Errorf("OUT_%s: %d events published, the local transactions make %d requests (+%d uncertain)", dc, got, want, slack)
		} else {
			t.Logf("OUT_%s: %d events for %d local requests (%d uncertain): no echo", dc, got, want, slack)
		}
	}
}

// waitIdle waits until every collector's consumer has nothing pending or
// unacknowledged.
func (b *bed) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitConverge)
	for _, dc := range dcNames() {
		if d := b.dcs[dc]; d.collector == nil || !d.collector.running() {
			continue
		}
		js := b.js(t, dc)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := js.Consumer(ctx, embednats.InStream(dc), "collector")
			cancel()
			if err == nil {
				info := c.CachedInfo()
				if info.NumPending == 0 && info.NumAckPending == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("collector of %s still busy after %s: %v", dc, waitConverge, err)
			}
			time.Sleep(pollEvery)
		}
	}
}

// streamsInfo describes every inbound stream and collector consumer (for
// failures).
func (b *bed) streamsInfo(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sb strings.Builder
	for _, dc := range dcNames() {
		js := b.js(t, dc)
		s, err := js.Stream(ctx, embednats.InStream(dc))
		if err != nil {
			fmt.Fprintf(&sb, "%s: %v\n", embednats.InStream(dc), err)
			continue
		}
		st := s.CachedInfo().State
		fmt.Fprintf(&sb, "%s: msgs %d, seq %d..%d, deleted %d", embednats.InStream(dc), st.Msgs, st.FirstSeq, st.LastSeq, st.NumDeleted)
		if c, err := js.Consumer(ctx, embednats.InStream(dc), "collector"); err == nil {
			ci := c.CachedInfo()
			fmt.Fprintf(&sb, "; consumer delivered %d, ack floor %d, pending %d, ack pending %d, redelivered %d",
				ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
