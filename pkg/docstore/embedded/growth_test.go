package embedded_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/embedded"
)

// ledgerLike is a mapping shaped like the coordinator's request ledger.
var ledgerLike = docstore.Mapping{
	"id":          docstore.Keyword,
	"origin":      docstore.Keyword,
	"shard":       docstore.Long,
	"state":       docstore.Keyword,
	"applied_dcs": docstore.Keyword,
	"attempts":    docstore.Long,
	"updated_at":  docstore.Date,
	"error":       docstore.Text,
}

// ledgerDoc is one request document as its facts arrive: round r adds an
// applied DC and moves updated_at.
func ledgerDoc(id string, r int) json.RawMessage {
	doc := map[string]any{
		"id":          id,
		"origin":      "dc1",
		"shard":       r % 16,
		"state":       "PENDING",
		"applied_dcs": []string{fmt.Sprintf("dc%d", r%3)},
		"attempts":    r,
		"updated_at":  time.Date(2026, 1, 1, 0, 0, r, 0, time.UTC).Format(time.RFC3339Nano),
		"error":       "no error so far, this text pads the document to a realistic size",
		"gtid":        fmt.Sprintf("0-1-%d", r),
		"note":        "an unmapped field, kept in the source only",
	}
	raw, _ := json.Marshal(doc)
	return raw
}

// dirBytes is the size of every file under dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil //nolint:nilerr // a segment the merger removed meanwhile
		}
		n += info.Size()
		return nil
	})
	require.NoError(t, err)
	return n
}

// writeRounds writes docs documents rounds times, batch documents a call,
// as merges (the way the ledger folds its facts).
func writeRounds(t testing.TB, s docstore.Store, index string, docs, rounds, batch int) {
	t.Helper()
	ctx := context.Background()
	for r := 0; r < rounds; r++ {
		for start := 0; start < docs; start += batch {
			ops := make([]docstore.Op, 0, batch)
			for i := start; i < start+batch && i < docs; i++ {
				id := fmt.Sprintf("dc1:req-%06d", i)
				ops = append(ops, docstore.Op{ID: id, Doc: ledgerDoc(id, r), Merge: true})
			}
			res, err := s.Bulk(ctx, index, ops)
			require.NoError(t, err)
			require.NoError(t, res.Err())
		}
	}
}

// TestWritesStayBounded writes new documents, the ledger's load, then
// rewrites the same ones over and over: the index directory must stay near
// the size of one copy of them, not grow with the number of writes. Sources
// once lived in the index's internal keys, which its persister copies into
// every snapshot: a drill's ledger reached 13 GB in 25 minutes, and this
// test's first phase wrote hundreds of MB.
func TestWritesStayBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.EnsureIndex(context.Background(), "ledger", ledgerLike))

	// One small batch at a time, as the ledger indexes its facts.
	const docs = 800
	writeRounds(t, s, "ledger", docs, 1, 10)
	// About 650 bytes a document once merged, 3 KB before; the merger and the persister
	// work in the background.
	const perDoc = 6 << 10
	var once int64
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		once = dirBytes(t, dir)
		return check.That(once <= docs*perDoc, "index at most %d bytes for %d documents, have %d", docs*perDoc, docs, once)
	})

	t.Logf("%d documents: %d bytes", docs, once)
	writeRounds(t, s, "ledger", docs, 3, 100)
	bound := 3*once + 1<<20
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		n := dirBytes(t, dir)
		return check.That(n <= bound, "index at most %d bytes after 3 more rounds (one round: %d), have %d", bound, once, n)
	})

	got, err := s.Get(context.Background(), "ledger", "dc1:req-000007")
	require.NoError(t, err)
	require.JSONEq(t, string(ledgerDoc("dc1:req-000007", 2)), string(got))
}

// BenchmarkLedgerWrites measures merge writes of ever new documents, the
// ledger's load, and reports the index size per document.
func BenchmarkLedgerWrites(b *testing.B) {
	dir := b.TempDir()
	s, err := embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(b, err)
	defer func() { require.NoError(b, s.Close()) }()
	require.NoError(b, s.EnsureIndex(context.Background(), "ledger", ledgerLike))
	const batch = 20
	b.ResetTimer()
	writeRounds(b, s, "ledger", b.N*batch, 1, batch)
	b.StopTimer()
	b.ReportMetric(float64(dirBytes(b, dir))/float64(b.N*batch), "disk-B/doc")
}
