package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
)

// base is the time of the corpus; fixed so that recorded traffic matches.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const eventsIndex = "docstore-events"

// eventsMapping resembles the audit log's.
var eventsMapping = docstore.Mapping{
	"actor": docstore.Keyword, "action": docstore.Keyword, "target": docstore.Keyword,
	"outcome": docstore.Keyword, "message": docstore.Text, "time": docstore.Date,
	"rto_ms": docstore.Long, "automatic": docstore.Boolean, "params.dc": docstore.Keyword,
}

func at(min int) string { return base.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }

// corpus is eight audit-like events, one minute apart.
func corpus() []docstore.Op {
	return []docstore.Op{
		{ID: "e1", Doc: doc(`{"actor":"token:alice","action":"switchover.start","target":"dc-a1/main","outcome":"OK","message":"planned switchover to replica two","time":%q,"rto_ms":1200,"automatic":false,"params":{"dc":"a1"}}`, at(1))},
		{ID: "e2", Doc: doc(`{"actor":"haagent:a1-1","action":"failover.automatic","target":"dc-a1/main","outcome":"OK","message":"master unreachable, promoted replica","time":%q,"rto_ms":3400,"automatic":true}`, at(2))},
		{ID: "e3", Doc: doc(`{"actor":"haagent:b1-1","action":"failover.automatic","target":"dc-b1/main","outcome":"FAILED","message":"promotion failed: no quorum","time":%q,"automatic":true}`, at(3))},
		{ID: "e4", Doc: doc(`{"actor":"token:bob","action":"killswitch.set","target":"global","outcome":"OK","message":"Kill switch enabled for maintenance","time":%q}`, at(4))},
		{ID: "e5", Doc: doc(`{"actor":"token:alice","action":"evacuate.start","target":"dc-a1","outcome":"DENIED","message":"evacuation denied: missing role","time":%q,"params":{"dc":"a1"}}`, at(5))},
		{ID: "e6", Doc: doc(`{"actor":"token:bob","action":"switchover.start","target":"dc-b1/main","outcome":"OK","message":"planned switchover after disk replacement","time":%q,"rto_ms":800}`, at(6))},
		{ID: "e7", Doc: doc(`{"actor":"haagent:a1-2","action":"fence.apply","target":"dc-a1/main","outcome":"OK","message":"fenced old master read only","time":%q}`, at(7))},
		{ID: "e8", Doc: doc(`{"actor":"token:carol","action":"killswitch.clear","target":"global","outcome":"OK","message":"kill switch cleared","time":%q}`, at(8))},
	}
}

func i64(v int64) *int64 { return &v }

// queryCases are the searches over the corpus, run in this order.
var queryCases = []struct {
	name string
	q    docstore.Query
	want []string
}{
	{"Field", docstore.Query{Text: "action:switchover.start"}, []string{"e1", "e6"}},
	{"EscapedField", docstore.Query{Text: `actor:token\:alice`}, []string{"e1", "e5"}},
	{"NestedField", docstore.Query{Text: "params.dc:a1"}, []string{"e1", "e5"}},
	{"FreeText", docstore.Query{Text: "replica"}, []string{"e1", "e2"}},
	{"FreeTextCase", docstore.Query{Text: "KILL"}, []string{"e4", "e8"}},
	{"Phrase", docstore.Query{Text: `"switch cleared"`}, []string{"e8"}},
	{"AndNot", docstore.Query{Text: `outcome:OK AND NOT actor:token\:bob`}, []string{"e1", "e2", "e7", "e8"}},
	{"Grouped", docstore.Query{Text: `(action:failover.automatic OR action:fence.apply) AND target:dc\-a1\/main`}, []string{"e2", "e7"}},
	{"Prohibit", docstore.Query{Text: `+outcome:OK -message:switchover`}, []string{"e2", "e4", "e7", "e8"}},
	{"Wildcard", docstore.Query{Text: "action:killswitch.*"}, []string{"e4", "e8"}},
	{"FreeWildcard", docstore.Query{Text: "promot*"}, []string{"e2", "e3"}},
	{"QueryRange", docstore.Query{Text: "rto_ms:[1000 TO *]"}, []string{"e1", "e2"}},
	{"Boolean", docstore.Query{Text: "automatic:true"}, []string{"e2", "e3"}},
	{"Terms", docstore.Query{Terms: map[string][]string{"outcome": {"FAILED", "DENIED"}}}, []string{"e3", "e5"}},
	{"TermsAndText", docstore.Query{Text: "switchover", Terms: map[string][]string{"actor": {"token:alice"}, "outcome": {"OK"}}}, []string{"e1"}},
	{"TimeRange", docstore.Query{TimeField: "time", From: base.Add(2 * time.Minute), To: base.Add(5 * time.Minute)}, []string{"e2", "e3", "e4"}},
	{"NumericRange", docstore.Query{Ranges: []docstore.Range{{Field: "rto_ms", Min: i64(1000)}}}, []string{"e1", "e2"}},
	{"SortAsc", docstore.Query{Sort: "time"}, []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"}},
	{"SortDesc", docstore.Query{Sort: "time", Desc: true}, []string{"e8", "e7", "e6", "e5", "e4", "e3", "e2", "e1"}},
	{"SortKeyword", docstore.Query{Sort: "actor"}, []string{"e2", "e7", "e3", "e1", "e5", "e4", "e6", "e8"}},
	{"SortMissingLast", docstore.Query{Sort: "rto_ms", Desc: true}, []string{"e2", "e1", "e6", "e8", "e7", "e5", "e4", "e3"}},
}

func testQuery(t *testing.T, s docstore.Store) {
	ctx := ctxFor(t)
	require.NoError(t, s.EnsureIndex(ctx, eventsIndex, eventsMapping))
	mustBulk(t, s, eventsIndex, corpus())
	require.NoError(t, s.Refresh(ctx, eventsIndex))

	for _, c := range queryCases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.Search(ctx, eventsIndex, c.q)
			require.NoError(t, err)
			// Without a sort field the order is by id.
			require.Equal(t, c.want, ids(res))
			require.EqualValues(t, len(c.want), res.Total)
			require.Empty(t, res.Next)
		})
	}
	t.Run("HitDocument", func(t *testing.T) {
		res, err := s.Search(ctx, eventsIndex, docstore.Query{Text: "action:fence.apply"})
		require.NoError(t, err)
		require.Len(t, res.Hits, 1)
		require.JSONEq(t, string(corpus()[6].Doc), string(res.Hits[0].Doc))
	})
	t.Run("Paging", func(t *testing.T) {
		q := docstore.Query{Sort: "time", Size: 3}
		var pages [][]string
		for {
			res, err := s.Search(ctx, eventsIndex, q)
			require.NoError(t, err)
			require.EqualValues(t, 8, res.Total)
			pages = append(pages, ids(res))
			if res.Next == "" {
				break
			}
			require.Less(t, len(pages), 4)
			q.After = res.Next
		}
		require.Equal(t, [][]string{{"e1", "e2", "e3"}, {"e4", "e5", "e6"}, {"e7", "e8"}}, pages)
	})
	t.Run("BadSyntax", func(t *testing.T) {
		_, err := s.Search(ctx, eventsIndex, docstore.Query{Text: "action:(failover"})
		require.ErrorIs(t, err, docstore.ErrBadQuery)
		var qe *docstore.QueryError
		require.ErrorAs(t, err, &qe)
		require.NotEmpty(t, qe.Reason)
	})
	t.Run("BadSort", func(t *testing.T) {
		_, err := s.Search(ctx, eventsIndex, docstore.Query{Sort: "message"})
		require.ErrorIs(t, err, docstore.ErrBadQuery)
	})
	t.Run("BadCursor", func(t *testing.T) {
		_, err := s.Search(ctx, eventsIndex, docstore.Query{After: "not-a-cursor"})
		require.ErrorIs(t, err, docstore.ErrBadQuery)
	})
	t.Run("Limits", func(t *testing.T) {
		// Refused before the backend runs them, with the limit named.
		for _, c := range []struct {
			name, text, reason string
		}{
			{"Long", "a " + strings.Repeat("b", docstore.MaxTextBytes), "MaxTextBytes"},
			{"Deep", strings.Repeat("(", docstore.MaxNesting+1) + "a" + strings.Repeat(")", docstore.MaxNesting+1), "MaxNesting"},
			{"HugeDeep", strings.Repeat("(", 4<<20), "MaxTextBytes"},
			{"Regex", "actor:/tok.*/", "regular expressions"},
			{"LeadingWildcard", "message:*omot*", "wildcard"},
			{"LeadingQuestionMark", "?romoted", "wildcard"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := s.Search(ctx, eventsIndex, docstore.Query{Text: c.text})
				require.ErrorIs(t, err, docstore.ErrBadQuery)
				var qe *docstore.QueryError
				require.ErrorAs(t, err, &qe)
				require.Contains(t, qe.Reason, c.reason)
			})
		}
		many := make([]string, docstore.MaxTermValues+1)
		for i := range many {
			many[i] = fmt.Sprint(i)
		}
		_, err := s.Search(ctx, eventsIndex, docstore.Query{Terms: map[string][]string{"actor": many}})
		require.ErrorIs(t, err, docstore.ErrBadQuery)
	})
	t.Run("BadSize", func(t *testing.T) {
		_, err := s.Search(ctx, eventsIndex, docstore.Query{Size: docstore.MaxSize + 1})
		require.ErrorIs(t, err, docstore.ErrBadQuery)
	})
}
