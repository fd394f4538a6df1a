package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
)

// Names of the top-level cases, in the order Run runs them.
const (
	CaseEnsureIndex = "EnsureIndex"
	CaseGetMissing  = "GetMissing"
	CaseMerge       = "Merge"
	CaseRejected    = "Rejected"
	CaseQuery       = "Query"
	CaseBulk500     = "Bulk500"
	CaseConcurrent  = "ConcurrentWriters"
)

// Cases lists the top-level case names.
func Cases() []string {
	return []string{CaseEnsureIndex, CaseGetMissing, CaseMerge, CaseRejected, CaseQuery, CaseBulk500, CaseConcurrent}
}

// Run runs the contract suite. open is called once per top-level case with
// that case's *testing.T and must return an empty store (or one in which the
// suite's index names are unused) that is closed by t.Cleanup or by the
// suite; it may call t.Skip.
func Run(t *testing.T, open func(t *testing.T) docstore.Store) {
	cases := map[string]func(*testing.T, docstore.Store){
		CaseEnsureIndex: testEnsureIndex,
		CaseGetMissing:  testGetMissing,
		CaseMerge:       testMerge,
		CaseRejected:    testRejected,
		CaseQuery:       testQuery,
		CaseBulk500:     testBulk500,
		CaseConcurrent:  testConcurrent,
	}
	for _, name := range Cases() {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { assert.NoError(t, s.Close()) })
			cases[name](t, s)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustBulk(t *testing.T, s docstore.Store, index string, ops []docstore.Op) {
	t.Helper()
	res, err := s.Bulk(ctxFor(t), index, ops)
	require.NoError(t, err)
	require.Len(t, res.Items, len(ops))
	require.NoError(t, res.Err())
	for i, it := range res.Items {
		require.Equal(t, ops[i].ID, it.ID, "item %d", i)
	}
}

func ids(res docstore.Result) []string {
	out := make([]string, 0, len(res.Hits))
	for _, h := range res.Hits {
		out = append(out, h.ID)
	}
	return out
}

func doc(format string, args ...any) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(format, args...))
}

func testEnsureIndex(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-ensure"
	m := docstore.Mapping{"actor": docstore.Keyword, "time": docstore.Date}
	require.NoError(t, s.EnsureIndex(ctx, idx, m))
	require.NoError(t, s.EnsureIndex(ctx, idx, m), "second EnsureIndex with the same mapping")

	// Adding a field is allowed, and the new field is searchable.
	m2 := docstore.Mapping{"actor": docstore.Keyword, "time": docstore.Date, "note": docstore.Text}
	require.NoError(t, s.EnsureIndex(ctx, idx, m2))
	mustBulk(t, s, idx, []docstore.Op{
		{ID: "n1", Doc: doc(`{"actor":"a","note":"Hello World"}`)},
		{ID: "n2", Doc: doc(`{"actor":"b","note":"goodbye"}`)},
	})
	require.NoError(t, s.Refresh(ctx, idx))
	res, err := s.Search(ctx, idx, docstore.Query{Text: "note:hello"})
	require.NoError(t, err)
	require.Equal(t, []string{"n1"}, ids(res))

	// Changing a field's type is a conflict.
	err = s.EnsureIndex(ctx, idx, docstore.Mapping{"actor": docstore.Text})
	require.ErrorIs(t, err, docstore.ErrMappingConflict)

	require.ErrorIs(t, s.EnsureIndex(ctx, "Bad_Name", m), docstore.ErrInvalid)
	require.ErrorIs(t, s.EnsureIndex(ctx, idx, docstore.Mapping{"x": "float"}), docstore.ErrInvalid)
}

func testGetMissing(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-get"
	require.NoError(t, s.EnsureIndex(ctx, idx, docstore.Mapping{"name": docstore.Keyword}))
	mustBulk(t, s, idx, []docstore.Op{{ID: "present", Doc: doc(`{"name":"here"}`)}})

	got, err := s.Get(ctx, idx, "present")
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"here"}`, string(got))

	_, err = s.Get(ctx, idx, "absent")
	require.ErrorIs(t, err, docstore.ErrNotFound)
	_, err = s.Get(ctx, "docstore-no-such-index", "x")
	require.ErrorIs(t, err, docstore.ErrNotFound)
	_, err = s.Search(ctx, "docstore-no-such-index", docstore.Query{})
	require.ErrorIs(t, err, docstore.ErrNotFound)
	require.ErrorIs(t, s.Refresh(ctx, "docstore-no-such-index"), docstore.ErrNotFound)
	_, err = s.Get(ctx, idx, "")
	require.ErrorIs(t, err, docstore.ErrInvalid)
}

func testMerge(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-merge"
	require.NoError(t, s.EnsureIndex(ctx, idx, docstore.Mapping{
		"name": docstore.Keyword, "count": docstore.Long, "tags": docstore.Keyword,
		"nested.a": docstore.Keyword, "nested.b": docstore.Keyword,
	}))
	mustBulk(t, s, idx, []docstore.Op{
		{ID: "a", Doc: doc(`{"name":"one","count":1,"nested":{"a":"x"},"tags":["p","q"]}`)},
		{ID: "b", Doc: doc(`{"name":"two"}`)},
	})
	mustBulk(t, s, idx, []docstore.Op{
		// Objects merge, scalars and arrays are replaced.
		{ID: "a", Merge: true, Doc: doc(`{"count":2,"nested":{"b":"y"},"tags":["r"]}`)},
		// Merge into an absent document creates it.
		{ID: "c", Merge: true, Doc: doc(`{"name":"three"}`)},
		// Replace drops the old fields.
		{ID: "b", Doc: doc(`{"count":5}`)},
		// A merge sees the write before it in the same call.
		{ID: "d", Doc: doc(`{"name":"four"}`)},
		{ID: "d", Merge: true, Doc: doc(`{"count":4}`)},
	})
	want := map[string]string{
		"a": `{"name":"one","count":2,"nested":{"a":"x","b":"y"},"tags":["r"]}`,
		"b": `{"count":5}`,
		"c": `{"name":"three"}`,
		"d": `{"name":"four","count":4}`,
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		got, err := s.Get(ctx, idx, id)
		require.NoError(t, err, id)
		require.JSONEq(t, want[id], string(got), id)
	}
	require.NoError(t, s.Refresh(ctx, idx))
	for _, c := range []struct {
		q    docstore.Query
		want []string
	}{
		{docstore.Query{Terms: map[string][]string{"name": {"two"}}}, []string{}},
		{docstore.Query{Text: "nested.b:y"}, []string{"a"}},
		{docstore.Query{Terms: map[string][]string{"tags": {"q"}}}, []string{}},
		{docstore.Query{Terms: map[string][]string{"tags": {"r"}}}, []string{"a"}},
		{docstore.Query{Text: "count:4"}, []string{"d"}},
	} {
		res, err := s.Search(ctx, idx, c.q)
		require.NoError(t, err, "%+v", c.q)
		require.Equal(t, c.want, ids(res), "%+v", c.q)
	}
}

func testRejected(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-rejected"
	require.NoError(t, s.EnsureIndex(ctx, idx, docstore.Mapping{
		"name": docstore.Keyword, "when": docstore.Date, "n": docstore.Long,
	}))
	ops := []docstore.Op{
		{ID: "ok1", Doc: doc(`{"name":"ok","when":"2024-05-01T00:00:00Z"}`)},
		{ID: "bad-date", Doc: doc(`{"when":"not a date"}`)},
		{ID: "bad-array", Doc: doc(`[1,2]`)},
		{ID: "bad-long", Doc: doc(`{"n":"abc"}`)},
		{ID: "", Doc: doc(`{"name":"no id"}`)},
		{ID: "ok2", Doc: doc(`{"n":7}`)},
	}
	res, err := s.Bulk(ctx, idx, ops)
	require.NoError(t, err)
	require.Len(t, res.Items, len(ops))
	for i, it := range res.Items {
		require.Equal(t, ops[i].ID, it.ID)
		if ops[i].ID == "ok1" || ops[i].ID == "ok2" {
			require.NoError(t, it.Err, ops[i].ID)
		} else {
			require.ErrorIs(t, it.Err, docstore.ErrRejected, "op %d %q", i, ops[i].ID)
		}
	}
	require.Len(t, res.Failed(), 4)
	require.ErrorIs(t, res.Err(), docstore.ErrRejected)
	for _, id := range []string{"ok1", "ok2"} {
		_, err := s.Get(ctx, idx, id)
		require.NoError(t, err, id)
	}
	for _, id := range []string{"bad-date", "bad-array", "bad-long"} {
		_, err := s.Get(ctx, idx, id)
		require.ErrorIs(t, err, docstore.ErrNotFound, id)
	}
}

func testBulk500(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-bulk"
	require.NoError(t, s.EnsureIndex(ctx, idx, docstore.Mapping{
		"seq": docstore.Long, "group": docstore.Keyword, "time": docstore.Date, "body": docstore.Text,
	}))
	ops := make([]docstore.Op, 500)
	for i := range ops {
		ops[i] = docstore.Op{ID: fmt.Sprintf("d%03d", i), Doc: doc(`{"seq":%d,"group":"g%d","time":%q,"body":"document number %d"}`,
			i, i%5, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i)}
	}
	mustBulk(t, s, idx, ops)
	require.NoError(t, s.Refresh(ctx, idx))

	res, err := s.Search(ctx, idx, docstore.Query{Size: 1})
	require.NoError(t, err)
	require.EqualValues(t, 500, res.Total)
	res, err = s.Search(ctx, idx, docstore.Query{Terms: map[string][]string{"group": {"g3"}}})
	require.NoError(t, err)
	require.EqualValues(t, 100, res.Total)
	got, err := s.Get(ctx, idx, "d321")
	require.NoError(t, err)
	require.JSONEq(t, string(ops[321].Doc), string(got))

	// Paging through everything visits each document once, in order.
	seen := pageAll(t, s, idx, docstore.Query{Sort: "seq", Size: 37}, 500)
	for i, id := range seen {
		require.Equal(t, fmt.Sprintf("d%03d", i), id)
	}
	seen = pageAll(t, s, idx, docstore.Query{Text: "group:g1 OR group:g2", Sort: "time", Desc: true, Size: 30}, 200)
	require.Equal(t, "d497", seen[0])
	require.Equal(t, "d001", seen[199])
}

// pageAll follows Next until the end and checks that each hit appears once.
func pageAll(t *testing.T, s docstore.Store, idx string, q docstore.Query, want int) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		require.Less(t, pages, want+2, "paging does not end")
		res, err := s.Search(ctxFor(t), idx, q)
		require.NoError(t, err)
		require.EqualValues(t, want, res.Total)
		for _, id := range ids(res) {
			require.False(t, seen[id], "%s seen twice", id)
			seen[id] = true
			all = append(all, id)
		}
		if res.Next == "" {
			break
		}
		require.Len(t, res.Hits, q.Size, "a page before the last is full")
		q.After = res.Next
	}
	require.Len(t, all, want)
	return all
}

func testConcurrent(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	const idx = "docstore-concurrent"
	const writers, batches, perBatch = 4, 5, 25
	require.NoError(t, s.EnsureIndex(ctx, idx, docstore.Mapping{
		"writer": docstore.Keyword, "n": docstore.Long,
		"w0": docstore.Long, "w1": docstore.Long, "w2": docstore.Long, "w3": docstore.Long,
	}))
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				ops := make([]docstore.Op, 0, perBatch+1)
				for i := range perBatch {
					n := b*perBatch + i
					ops = append(ops, docstore.Op{ID: fmt.Sprintf("w%d-%03d", w, n), Doc: doc(`{"writer":"w%d","n":%d}`, w, n)})
				}
				// Every writer also merges its own field into one shared document.
				ops = append(ops, docstore.Op{ID: "shared", Merge: true, Doc: doc(`{"w%d":%d}`, w, b)})
				res, err := s.Bulk(ctx, idx, ops)
				if err == nil {
					err = res.Err()
				}
				if err == nil && len(res.Items) != len(ops) {
					err = fmt.Errorf("%d items for %d ops", len(res.Items), len(ops))
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	require.NoError(t, errors.Join(all...))
	require.NoError(t, s.Refresh(ctx, idx))
	res, err := s.Search(ctx, idx, docstore.Query{Terms: map[string][]string{"writer": {"w0", "w1", "w2", "w3"}}, Size: 1})
	require.NoError(t, err)
	require.EqualValues(t, writers*batches*perBatch, res.Total)
	for w := range writers {
		got := pageAll(t, s, idx, docstore.Query{Terms: map[string][]string{"writer": {fmt.Sprintf("w%d", w)}}, Sort: "n", Size: 1000}, batches*perBatch)
		for n, id := range got {
			require.Equal(t, fmt.Sprintf("w%d-%03d", w, n), id)
		}
	}
	shared, err := s.Get(ctx, idx, "shared")
	require.NoError(t, err)
	require.JSONEq(t, `{"w0":4,"w1":4,"w2":4,"w3":4}`, string(shared))
}
