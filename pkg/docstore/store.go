package docstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Store is a set of named indexes of JSON documents. The package comment
// states the contract every implementation keeps. A Store is safe for
// concurrent use.
type Store interface {
	// EnsureIndex creates index with mapping m, or checks that an existing
	// index agrees with it (adding new fields). Idempotent.
	EnsureIndex(ctx context.Context, index string, m Mapping) error
	// Bulk applies ops in order. Per-operation failures are in the result;
	// the error is for failures of the whole call.
	Bulk(ctx context.Context, index string, ops []Op) (BulkResult, error)
	// Get returns the document with id, or ErrNotFound.
	Get(ctx context.Context, index, id string) (json.RawMessage, error)
	// Search returns one page of the documents matching q.
	Search(ctx context.Context, index string, q Query) (Result, error)
	// Refresh makes all completed writes visible to Search.
	Refresh(ctx context.Context, index string) error
	// Close releases the store; it must not be used afterwards.
	Close() error
}

// FieldType is the type of a mapped field.
type FieldType string

// Field types of a Mapping.
const (
	Keyword FieldType = "keyword"
	Text    FieldType = "text"
	Date    FieldType = "date"
	Long    FieldType = "long"
	Boolean FieldType = "boolean"
)

// Mapping maps field names (dotted for nested objects) to their types.
type Mapping map[string]FieldType

// Extend returns m with the fields of add it lacks, and whether any were
// added. A field of add that m has with another type is
// ErrMappingConflict (index names the index in the error), and so is a
// union that does not validate.
func (m Mapping) Extend(index string, add Mapping) (Mapping, bool, error) {
	union := Mapping{}
	for f, t := range m {
		union[f] = t
	}
	added := false
	for f, t := range add {
		old, ok := m[f]
		switch {
		case ok && old != t:
			return nil, false, fmt.Errorf("%w: index %q field %q is %s, not %s", ErrMappingConflict, index, f, old, t)
		case !ok:
			union[f] = t
			added = true
		}
	}
	if !added {
		return m, false, nil
	}
	if err := union.Validate(); err != nil {
		return nil, false, fmt.Errorf("%w: index %q: %w", ErrMappingConflict, index, err)
	}
	return union, true, nil
}

// Validate checks the field names and types.
func (m Mapping) Validate() error {
	if len(m) == 0 {
		return invalidf("mapping has no fields")
	}
	for name, typ := range m {
		if p := fieldNameProblem(name); p != "" {
			return invalidf("%s", p)
		}
		switch typ {
		case Keyword, Text, Date, Long, Boolean:
		default:
			return invalidf("field %q has unknown type %q", name, typ)
		}
	}
	// A field cannot be both a leaf and an object ("a" and "a.b").
	for name := range m {
		for i := 0; i < len(name); i++ {
			if name[i] == '.' {
				if _, ok := m[name[:i]]; ok {
					return invalidf("field %q is mapped both as a value and as an object", name[:i])
				}
			}
		}
	}
	return nil
}

// Op is one write of a Bulk call.
type Op struct {
	// ID identifies the document within its index.
	ID string
	// Doc is a JSON object: the whole document, or the fields to merge.
	Doc json.RawMessage
	// Merge true merges Doc into the stored document (creating it when
	// absent); false replaces the stored document with Doc.
	Merge bool
}

// BulkResult reports every operation of a Bulk call.
type BulkResult struct {
	// Items has one entry per operation, in the order of the operations.
	Items []BulkItem
}

// BulkItem is the outcome of one operation.
type BulkItem struct {
	ID string
	// Err is nil when the operation was applied; otherwise it wraps
	// ErrRejected (the document was refused; retrying will not help) or
	// ErrUnavailable (the store could not apply it now).
	Err error
}

// Failed returns the items that failed.
func (r BulkResult) Failed() []BulkItem {
	var out []BulkItem
	for _, it := range r.Items {
		if it.Err != nil {
			out = append(out, it)
		}
	}
	return out
}

// Err joins the errors of the failed items, or returns nil when every
// operation was applied.
func (r BulkResult) Err() error {
	var errs []error
	for _, it := range r.Failed() {
		errs = append(errs, it.Err)
	}
	return errors.Join(errs...)
}

// Query selects, orders and pages documents. The zero Query matches every
// document, in id order, 50 at a time.
type Query struct {
	// Text is a query in query_string syntax; empty matches everything.
	Text string
	// Terms keeps documents whose keyword field holds any of the values,
	// for every field listed.
	Terms map[string][]string
	// TimeField, From and To keep documents with From ≤ TimeField < To; a
	// zero bound is open.
	TimeField string
	From, To  time.Time
	// Ranges bound further long or date fields.
	Ranges []Range
	// Sort names a keyword, date, long or boolean field; empty sorts by id.
	Sort string
	// Desc reverses the order.
	Desc bool
	// Size is the page size: 0 means DefaultSize; at most MaxSize.
	Size int
	// After is Result.Next of the previous page.
	After string
}

// Range bounds one field: Min and Max (inclusive, nil is open) for a long
// field, From and To (From ≤ t < To, zero is open) for a date field.
type Range struct {
	Field    string
	Min, Max *int64
	From, To time.Time
}

// Page sizes of a Query.
const (
	DefaultSize = 50
	MaxSize     = 1000
)

// Result is one page of search hits.
type Result struct {
	// Total counts all documents matching the query, not just this page.
	Total int64
	Hits  []Hit
	// Next is the cursor for the following page; empty on the last page.
	Next string
}

// Hit is one matching document.
type Hit struct {
	ID  string
	Doc json.RawMessage
}

// Normalize validates q and returns it with defaults filled in. Backends
// call it before running a search.
func (q Query) Normalize() (Query, error) {
	switch {
	case q.Size == 0:
		q.Size = DefaultSize
	case q.Size < 0:
		return q, BadQueryf("size %d is negative", q.Size)
	case q.Size > MaxSize:
		return q, BadQueryf("size %d exceeds %d", q.Size, MaxSize)
	}
	if err := checkText(q.Text); err != nil {
		return q, err
	}
	if err := checkTerms(q.Terms); err != nil {
		return q, err
	}
	if q.TimeField == "" && (!q.From.IsZero() || !q.To.IsZero()) {
		return q, BadQueryf("From/To need a TimeField")
	}
	if q.TimeField != "" {
		if p := fieldNameProblem(q.TimeField); p != "" {
			return q, BadQueryf("time field: %s", p)
		}
	}
	for field, vals := range q.Terms {
		if p := fieldNameProblem(field); p != "" {
			return q, BadQueryf("terms: %s", p)
		}
		if len(vals) == 0 {
			return q, BadQueryf("terms filter on %q has no values", field)
		}
	}
	for _, r := range q.Ranges {
		if p := fieldNameProblem(r.Field); p != "" {
			return q, BadQueryf("range: %s", p)
		}
		num := r.Min != nil || r.Max != nil
		tim := !r.From.IsZero() || !r.To.IsZero()
		if num && tim {
			return q, BadQueryf("range on %q mixes numeric and time bounds", r.Field)
		}
	}
	if q.Sort != "" {
		if p := fieldNameProblem(q.Sort); p != "" {
			return q, BadQueryf("sort: %s", p)
		}
	}
	return q, nil
}

// fieldNameProblem says what is wrong with a field name, or "".
func fieldNameProblem(name string) string {
	if name == "" {
		return "empty field name"
	}
	if name[0] == '_' || name[0] == '.' || name[len(name)-1] == '.' {
		return fmt.Sprintf("field name %q must not start with '_' or '.' or end with '.'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' && i > 0 && name[i-1] == '.' {
			return fmt.Sprintf("field name %q has an empty part", name)
		}
		if c <= ' ' || c == '*' || c == '"' || c == '\\' || c == ':' {
			return fmt.Sprintf("field name %q has a forbidden character", name)
		}
	}
	if name == ReservedIDField {
		return fmt.Sprintf("field name %q is reserved", name)
	}
	return ""
}

// ReservedIDField is a keyword field the Elasticsearch backend adds to every
// document (a copy of its id, for sorting); documents must not use it.
const ReservedIDField = "docstore_id"

// ValidateIndexName checks an index name against Elasticsearch's rules:
// lowercase, at most 255 bytes, not starting with '-', '_' or '+', and none
// of \ / * ? " < > | , # : or space. Names starting with '.' (hidden or
// system indexes in Elasticsearch) are refused too.
func ValidateIndexName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return invalidf("index name %q", name)
	case len(name) > 255:
		return invalidf("index name longer than 255 bytes")
	case name[0] == '-' || name[0] == '_' || name[0] == '+' || name[0] == '.':
		return invalidf("index name %q starts with %q", name, name[0])
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			return invalidf("index name %q is not lowercase", name)
		}
		switch c {
		case '\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':', ' ':
			return invalidf("index name %q contains %q", name, c)
		}
	}
	return nil
}
