package embedded

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/drplane/drplane/pkg/docstore"
)

// Search implements docstore.Store.
func (s *Store) Search(ctx context.Context, name string, q docstore.Query) (docstore.Result, error) {
	q, err := q.Normalize()
	if err != nil {
		return docstore.Result{}, err
	}
	ix, err := s.getIndex(name)
	if err != nil {
		return docstore.Result{}, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()

	req, err := ix.request(q)
	if err != nil {
		return docstore.Result{}, err
	}
	res, err := ix.bi.SearchInContext(ctx, req)
	if err != nil {
		return docstore.Result{}, fmt.Errorf("%w: search %q: %w", docstore.ErrUnavailable, name, err)
	}
	out := docstore.Result{Total: int64(res.Total)}
	hits := res.Hits
	if len(hits) > q.Size {
		hits = hits[:q.Size]
		out.Next = encodeCursor(hits[len(hits)-1].Sort)
	}
	out.Hits = make([]docstore.Hit, 0, len(hits))
	for _, h := range hits {
		raw, ok := h.Fields[sourceField].(string)
		if !ok {
			continue
		}
		out.Hits = append(out.Hits, docstore.Hit{ID: h.ID, Doc: json.RawMessage(raw)})
	}
	return out, nil
}

// request builds the bleve search of a normalised query; one hit more than
// the page size tells whether another page follows.
func (ix *index) request(q docstore.Query) (*bleve.SearchRequest, error) {
	tree, err := parseQuery(q.Text)
	if err != nil {
		return nil, &docstore.QueryError{Reason: err.Error()}
	}
	tr := translator{m: ix.m}
	main, err := tr.node(tree)
	if err != nil {
		return nil, err
	}
	filters, err := tr.filters(q)
	if err != nil {
		return nil, err
	}
	final := main
	if len(filters) > 0 {
		final = bleve.NewConjunctionQuery(append([]query.Query{main}, filters...)...)
	}

	order := search.SortOrder{}
	if q.Sort != "" {
		typ, ok := ix.m[q.Sort]
		switch {
		case !ok:
			return nil, docstore.BadQueryf("no mapping found for sort field %q", q.Sort)
		case typ == docstore.Text:
			return nil, docstore.BadQueryf("cannot sort on text field %q", q.Sort)
		}
		// Multi-valued fields sort by their smallest value ascending and
		// their largest descending, as in Elasticsearch.
		mode := search.SortFieldMin
		if q.Desc {
			mode = search.SortFieldMax
		}
		order = append(order, &search.SortField{
			Field: q.Sort, Desc: q.Desc, Type: search.SortFieldAuto,
			Mode: mode, Missing: search.SortFieldMissingLast,
		})
	}
	order = append(order, &search.SortDocID{Desc: q.Desc})

	req := bleve.NewSearchRequestOptions(final, q.Size+1, 0, false)
	req.Fields = []string{sourceField}
	req.SortByCustom(order)
	if q.After != "" {
		after, err := decodeCursor(q.After)
		if err != nil || len(after) != len(order) {
			return nil, docstore.BadQueryf("invalid paging cursor")
		}
		req.SearchAfter = after
	}
	if err := req.Validate(); err != nil {
		return nil, &docstore.QueryError{Reason: err.Error()}
	}
	return req, nil
}

// A cursor holds the raw sort values of the last hit of a page. They may be
// binary (prefix-coded numbers), hence the []byte.
func encodeCursor(sortValues []string) string {
	raw := make([][]byte, len(sortValues))
	for i, v := range sortValues {
		raw[i] = []byte(v)
	}
	b, _ := json.Marshal(raw)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c string) ([]string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, err
	}
	var raw [][]byte
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i] = string(v)
	}
	return out, nil
}
