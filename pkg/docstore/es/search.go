package es

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/drplane/drplane/pkg/docstore"
)

// Search implements docstore.Store with one _search request: query_string
// (lenient, so words that do not fit a field's type match nothing there)
// plus bool filters, sorted by the field and the id copy, paged with
// search_after. One hit more than the page size tells whether another page
// follows; hits.total is counted exactly.
func (s *Store) Search(ctx context.Context, index string, q docstore.Query) (docstore.Result, error) {
	if err := docstore.ValidateIndexName(index); err != nil {
		return docstore.Result{}, err
	}
	body, err := searchBody(q, s.searchTimeout)
	if err != nil {
		return docstore.Result{}, err
	}
	r, err := s.do(ctx, http.MethodPost, "/"+index+"/_search", sourceExcludes(), body, false)
	if err != nil {
		return docstore.Result{}, err
	}
	if r.status != http.StatusOK {
		return docstore.Result{}, classify(r, "search "+index, docstore.ErrBadQuery)
	}
	var resp struct {
		TimedOut bool `json:"timed_out"`
		Hits     struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
			Hits []struct {
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
				Sort   json.RawMessage `json:"sort"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		return docstore.Result{}, fmt.Errorf("%w: search %s: decode response: %w", docstore.ErrUnavailable, index, err)
	}
	if resp.TimedOut {
		return docstore.Result{}, fmt.Errorf("%w: search %s: ran out of its %s timeout", docstore.ErrUnavailable, index, s.searchTimeout)
	}
	size := q.Size
	if size == 0 {
		size = docstore.DefaultSize
	}
	hits := resp.Hits.Hits
	out := docstore.Result{Total: resp.Hits.Total.Value}
	if len(hits) > size {
		hits = hits[:size]
		out.Next = base64.RawURLEncoding.EncodeToString(hits[len(hits)-1].Sort)
	}
	out.Hits = make([]docstore.Hit, 0, len(hits))
	for _, h := range hits {
		out.Hits = append(out.Hits, docstore.Hit{ID: h.ID, Doc: h.Source})
	}
	return out, nil
}

// searchBody is the _search request body of q.
func searchBody(q docstore.Query, timeout time.Duration) ([]byte, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	var main any = map[string]any{"match_all": map[string]any{}}
	if q.Text != "" {
		main = map[string]any{"query_string": map[string]any{
			"query": q.Text, "lenient": true, "allow_leading_wildcard": false,
		}}
	}
	filters := filterClauses(q)
	query := main
	if len(filters) > 0 {
		query = map[string]any{"bool": map[string]any{"must": []any{main}, "filter": filters}}
	}
	order := "asc"
	if q.Desc {
		order = "desc"
	}
	var sortKeys []any
	if q.Sort != "" {
		sortKeys = append(sortKeys, map[string]any{q.Sort: map[string]any{"order": order}})
	}
	sortKeys = append(sortKeys, map[string]any{docstore.ReservedIDField: map[string]any{"order": order}})
	body := map[string]any{
		"size":             q.Size + 1,
		"track_total_hits": true,
		"timeout":          fmt.Sprintf("%dms", timeout.Milliseconds()),
		"query":            query,
		"sort":             sortKeys,
	}
	if q.After != "" {
		after, err := decodeCursor(q.After, len(sortKeys))
		if err != nil {
			return nil, err
		}
		body["search_after"] = after
	}
	return json.Marshal(body)
}

func filterClauses(q docstore.Query) []any {
	var out []any
	fields := make([]string, 0, len(q.Terms))
	for f := range q.Terms {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		out = append(out, map[string]any{"terms": map[string]any{f: q.Terms[f]}})
	}
	window := func(field string, from, to time.Time) {
		b := map[string]any{}
		if !from.IsZero() {
			b["gte"] = esTime(from)
		}
		if !to.IsZero() {
			b["lt"] = esTime(to)
		}
		if len(b) > 0 {
			out = append(out, map[string]any{"range": map[string]any{field: b}})
		}
	}
	window(q.TimeField, q.From, q.To)
	for _, r := range q.Ranges {
		if r.Min == nil && r.Max == nil {
			window(r.Field, r.From, r.To)
			continue
		}
		b := map[string]any{}
		if r.Min != nil {
			b["gte"] = *r.Min
		}
		if r.Max != nil {
			b["lte"] = *r.Max
		}
		out = append(out, map[string]any{"range": map[string]any{r.Field: b}})
	}
	return out
}

// esTime formats a bound at Elasticsearch's millisecond resolution.
func esTime(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

// decodeCursor returns the search_after values in a cursor: the raw sort
// array of the last hit of the previous page.
func decodeCursor(c string, n int) (json.RawMessage, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, docstore.BadQueryf("invalid paging cursor")
	}
	var vals []json.RawMessage
	if err := json.Unmarshal(b, &vals); err != nil || len(vals) != n {
		return nil, docstore.BadQueryf("invalid paging cursor")
	}
	return json.RawMessage(b), nil
}

// Refresh implements docstore.Store.
func (s *Store) Refresh(ctx context.Context, index string) error {
	if err := docstore.ValidateIndexName(index); err != nil {
		return err
	}
	r, err := s.do(ctx, http.MethodPost, "/"+index+"/_refresh", nil, nil, false)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return classify(r, "refresh "+index, docstore.ErrInvalid)
	}
	return nil
}
