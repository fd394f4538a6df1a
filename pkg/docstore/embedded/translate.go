package embedded

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/drplane/drplane/pkg/docstore"
)

// translator turns parsed queries and filters into bleve queries for one
// index mapping. Values that do not fit a field's type match nothing, the
// way Elasticsearch's lenient query_string does.
type translator struct {
	m docstore.Mapping
}

func (tr translator) node(n node) (query.Query, error) {
	switch n := n.(type) {
	case allNode:
		return bleve.NewMatchAllQuery(), nil
	case existsNode:
		return tr.exists(n.field), nil
	case termNode:
		if n.field == "" {
			return tr.anyField(n)
		}
		return tr.term(n.field, n), nil
	case rangeNode:
		return tr.rangeQuery(n)
	case boolNode:
		return tr.boolean(n)
	}
	return bleve.NewMatchNoneQuery(), nil
}

func (tr translator) boolean(b boolNode) (query.Query, error) {
	conv := func(ns []node) ([]query.Query, error) {
		out := make([]query.Query, 0, len(ns))
		for _, n := range ns {
			q, err := tr.node(n)
			if err != nil {
				return nil, err
			}
			out = append(out, q)
		}
		return out, nil
	}
	must, err := conv(b.must)
	if err != nil {
		return nil, err
	}
	should, err := conv(b.should)
	if err != nil {
		return nil, err
	}
	mustNot, err := conv(b.mustNot)
	if err != nil {
		return nil, err
	}
	// Should clauses only decide matching when there is no must clause.
	if len(must) == 0 && len(should) > 0 {
		must = append(must, bleve.NewDisjunctionQuery(should...))
	}
	if len(must) == 0 {
		must = append(must, bleve.NewMatchAllQuery())
	}
	var q query.Query = bleve.NewConjunctionQuery(must...)
	if len(must) == 1 {
		q = must[0]
	}
	if len(mustNot) == 0 {
		return q, nil
	}
	bq := bleve.NewBooleanQuery()
	bq.AddMust(q)
	bq.AddMustNot(mustNot...)
	return bq, nil
}

// defaultFields are the fields bare words search: keyword, text and long.
func (tr translator) defaultFields() []string {
	var out []string
	for f, typ := range tr.m {
		switch typ {
		case docstore.Keyword, docstore.Text, docstore.Long:
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

func (tr translator) anyField(t termNode) (query.Query, error) {
	var qs []query.Query
	for _, f := range tr.defaultFields() {
		qs = append(qs, tr.term(f, t))
	}
	if len(qs) == 0 {
		return bleve.NewMatchNoneQuery(), nil
	}
	return bleve.NewDisjunctionQuery(qs...), nil
}

// term matches a word, phrase or wildcard on one field.
func (tr translator) term(field string, t termNode) query.Query {
	typ, ok := tr.m[field]
	if !ok {
		return bleve.NewMatchNoneQuery()
	}
	if t.wildcard {
		switch typ {
		case docstore.Keyword:
			return regexpQuery(field, t.pattern, false)
		case docstore.Text:
			return regexpQuery(field, t.pattern, true)
		}
		return bleve.NewMatchNoneQuery()
	}
	switch typ {
	case docstore.Keyword:
		q := bleve.NewTermQuery(t.text)
		q.SetField(field)
		return q
	case docstore.Text:
		if t.phrase {
			q := bleve.NewMatchPhraseQuery(t.text)
			q.SetField(field)
			q.Analyzer = textAnalyzer
			return q
		}
		q := bleve.NewMatchQuery(t.text)
		q.SetField(field)
		q.Analyzer = textAnalyzer
		q.SetOperator(query.MatchQueryOperatorOr)
		return q
	default:
		return tr.exact(field, typ, t.text)
	}
}

// exact matches a long, date or boolean field (or a keyword) equal to v.
func (tr translator) exact(field string, typ docstore.FieldType, v string) query.Query {
	switch typ {
	case docstore.Long:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bleve.NewMatchNoneQuery()
		}
		return numRange(field, ptr(float64(n)), ptr(float64(n)), true, true)
	case docstore.Date:
		tm, err := parseDate(v)
		if err != nil {
			return bleve.NewMatchNoneQuery()
		}
		return dateRange(field, tm, tm, true, true)
	case docstore.Boolean:
		b, err := strconv.ParseBool(v)
		if err != nil || (v != "true" && v != "false") {
			return bleve.NewMatchNoneQuery()
		}
		q := bleve.NewBoolFieldQuery(b)
		q.SetField(field)
		return q
	default:
		q := bleve.NewTermQuery(v)
		q.SetField(field)
		return q
	}
}

func (tr translator) exists(field string) query.Query {
	switch tr.m[field] {
	case docstore.Keyword, docstore.Text:
		q := bleve.NewRegexpQuery(".*")
		q.SetField(field)
		return q
	case docstore.Long, docstore.Date:
		return numRange(field, nil, nil, true, true)
	case docstore.Boolean:
		t, f := bleve.NewBoolFieldQuery(true), bleve.NewBoolFieldQuery(false)
		t.SetField(field)
		f.SetField(field)
		return bleve.NewDisjunctionQuery(t, f)
	}
	return bleve.NewMatchNoneQuery()
}

func (tr translator) rangeQuery(r rangeNode) (query.Query, error) {
	typ, ok := tr.m[r.field]
	if !ok {
		return bleve.NewMatchNoneQuery(), nil
	}
	switch typ {
	case docstore.Long:
		var lo, hi *float64
		if !r.loOpen {
			n, err := strconv.ParseInt(r.lo, 10, 64)
			if err != nil {
				return bleve.NewMatchNoneQuery(), nil
			}
			lo = ptr(float64(n))
		}
		if !r.hiOpen {
			n, err := strconv.ParseInt(r.hi, 10, 64)
			if err != nil {
				return bleve.NewMatchNoneQuery(), nil
			}
			hi = ptr(float64(n))
		}
		return numRange(r.field, lo, hi, r.loInc, r.hiInc), nil
	case docstore.Date:
		var lo, hi time.Time
		var err error
		if !r.loOpen {
			if lo, err = parseDate(r.lo); err != nil {
				return bleve.NewMatchNoneQuery(), nil
			}
		}
		if !r.hiOpen {
			if hi, err = parseDate(r.hi); err != nil {
				return bleve.NewMatchNoneQuery(), nil
			}
		}
		return dateRange(r.field, lo, hi, r.loInc, r.hiInc), nil
	case docstore.Keyword, docstore.Text:
		q := bleve.NewTermRangeInclusiveQuery(r.lo, r.hi, &r.loInc, &r.hiInc)
		q.SetField(r.field)
		return q, nil
	}
	return bleve.NewMatchNoneQuery(), nil
}

// filters returns the bleve queries of q's Terms, time window and Ranges.
func (tr translator) filters(q docstore.Query) ([]query.Query, error) {
	var out []query.Query
	fields := make([]string, 0, len(q.Terms))
	for f := range q.Terms {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		typ, ok := tr.m[f]
		if !ok {
			out = append(out, bleve.NewMatchNoneQuery())
			continue
		}
		alts := make([]query.Query, 0, len(q.Terms[f]))
		for _, v := range q.Terms[f] {
			alts = append(alts, tr.exact(f, typ, v))
		}
		out = append(out, bleve.NewDisjunctionQuery(alts...))
	}
	window := func(field string, from, to time.Time) error {
		if from.IsZero() && to.IsZero() {
			return nil
		}
		typ, ok := tr.m[field]
		if !ok {
			out = append(out, bleve.NewMatchNoneQuery())
			return nil
		}
		if typ != docstore.Date {
			return docstore.BadQueryf("%q is a %s field, not a date field", field, typ)
		}
		out = append(out, dateRange(field, from, to, true, false))
		return nil
	}
	if err := window(q.TimeField, q.From, q.To); err != nil {
		return nil, err
	}
	for _, r := range q.Ranges {
		if r.Min == nil && r.Max == nil {
			if err := window(r.Field, r.From, r.To); err != nil {
				return nil, err
			}
			continue
		}
		typ, ok := tr.m[r.Field]
		if !ok {
			out = append(out, bleve.NewMatchNoneQuery())
			continue
		}
		if typ != docstore.Long {
			return nil, docstore.BadQueryf("%q is a %s field, not a long field", r.Field, typ)
		}
		var lo, hi *float64
		if r.Min != nil {
			lo = ptr(float64(*r.Min))
		}
		if r.Max != nil {
			hi = ptr(float64(*r.Max))
		}
		out = append(out, numRange(r.Field, lo, hi, true, true))
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

func numRange(field string, lo, hi *float64, loInc, hiInc bool) query.Query {
	if lo == nil {
		lo = ptr(math.Inf(-1))
	}
	if hi == nil {
		hi = ptr(math.Inf(1))
	}
	q := bleve.NewNumericRangeInclusiveQuery(lo, hi, &loInc, &hiInc)
	q.SetField(field)
	return q
}

// dateRange bounds a date field; a zero bound is open. Dates are compared
// at millisecond resolution, like Elasticsearch's date type. bleve indexes a
// date as its nanoseconds, encoded the way numeric.Int64ToFloat64 maps
// int64 to sortable float64 bits.
func dateRange(field string, lo, hi time.Time, loInc, hiInc bool) query.Query {
	var plo, phi *float64
	if !lo.IsZero() {
		plo = ptr(numeric.Int64ToFloat64(lo.Truncate(time.Millisecond).UnixNano()))
	}
	if !hi.IsZero() {
		phi = ptr(numeric.Int64ToFloat64(hi.Truncate(time.Millisecond).UnixNano()))
	}
	return numRange(field, plo, phi, loInc, hiInc)
}

// regexpQuery builds an anchored pattern from a wildcard term.
func regexpQuery(field string, pat []patPart, lower bool) query.Query {
	var b strings.Builder
	for _, p := range pat {
		switch p.wild {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			lit := p.lit
			if lower {
				lit = strings.ToLower(lit)
			}
			b.WriteString(regexp.QuoteMeta(lit))
		}
	}
	q := bleve.NewRegexpQuery(b.String())
	q.SetField(field)
	return q
}
