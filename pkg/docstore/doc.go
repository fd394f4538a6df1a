// Package docstore defines drplane's document store: named indexes of JSON
// documents with an explicit field mapping, written in bulk and searched with
// Elasticsearch's query_string syntax plus exact filters, ranges, sorting and
// cursor paging. The audit log uses it now, the replication request ledger
// later.
//
// Two backends implement Store: docstore/embedded (a bleve index in a
// directory or in memory, for single-process deployments, the lab and
// tests) and docstore/es (Elasticsearch 8). docstore/storetest is the
// contract suite both pass.
//
// # Contract
//
// Indexes. EnsureIndex creates an index with a Mapping, or checks an existing
// one: calling it again with the same mapping is a no-op, fields may be added,
// and changing the type of an existing field fails with ErrMappingConflict.
// Fields that are not in the mapping are kept in the document (returned by Get
// and Search) but are not searchable. Dotted names ("params.dc") map fields
// of nested objects. Index names follow Elasticsearch's rules (see
// ValidateIndexName). Write only into ensured indexes: the embedded backend
// answers ErrNotFound otherwise, Elasticsearch would create the index from
// the template EnsureIndex left behind.
//
// Field types. keyword: exact strings (numbers and booleans are kept as
// their text), matched whole and case-sensitively. text: analysed into
// lowercase words (Unicode word boundaries, no stemming, no stop words).
// date: RFC 3339 strings; Elasticsearch keeps millisecond resolution, so
// queries and sorts must not depend on finer differences. long: integers
// (the embedded backend is exact up to 2^53). boolean: true/false.
//
// Writes. Bulk applies its operations in order and reports each one in
// BulkResult.Items (same order, same length). An operation either replaces
// the document (Merge false) or merges a partial document into the stored
// one (Merge true): objects merge recursively, any other value (arrays
// included) replaces the stored one, and an absent document is created from
// the partial one (upsert). A document rejected by the mapping (a date that
// does not parse, a long that is not a number) or not a JSON object fails
// alone, with an error wrapping ErrRejected; operations the store could not
// attempt fail with ErrUnavailable. Bulk's own error is reserved for
// failures of the whole call. Nothing is dropped silently: check
// BulkResult.Err.
//
// Reads. Get returns the stored document by id at once (it does not wait
// for a refresh). Search sees writes after Refresh (Elasticsearch refreshes
// about once a second by itself; the embedded store is searchable at once).
//
// Queries. Query.Text uses query_string syntax: bare words search every
// keyword and text field (and long fields when the word is an integer);
// field:value, field:"a phrase", field:(a OR b); AND, OR, NOT, &&, ||, !,
// +required, -prohibited, parentheses; wildcards * and ?; ranges
// field:[a TO b], field:{a TO b}, field:>=a; _exists_:field. Bare terms are
// joined with OR. Reserved characters (+ - = & | > < ! ( ) { } [ ] ^ " ~ * ?
// : \ /) are escaped with a backslash. Terms filters keep documents whose
// keyword field holds any of the listed values (all fields must match).
// Time windows keep From ≤ t < To; long ranges keep Min ≤ v ≤ Max. Results are sorted by a
// keyword, date, long or boolean field, then by id in the same direction;
// documents without the sort field come last; with no Sort field they are
// in id order. Relevance ordering is not offered. Result.Next is non-empty
// exactly when more hits follow; passing it back as Query.After with the
// same query returns the next page, so paging visits every matching
// document once as long as the sort values of the documents do not change
// meanwhile. A malformed query, an unknown or unsortable sort field or a
// size out of range fails with an error matching ErrBadQuery (a *QueryError
// carrying the reason).
//
// Limits, the same on both backends and checked before a search runs (a
// search comes from API callers, viewers included): Query.Text of at most
// MaxTextBytes, parentheses nested at most MaxNesting deep, at most
// MaxTermValues terms values; regular expressions (/re/) and terms that
// start with a wildcard (*foo, ?oo; a lone * is "any value") are refused,
// since either walks the whole term dictionary. Elasticsearch searches also
// run under a timeout (es.Options.SearchTimeout).
//
// Errors. ErrNotFound: no such document or index. ErrBadQuery: the query
// was refused. ErrUnavailable: the backend could not be reached or refused
// for load; retrying later may succeed. ErrMappingConflict, ErrRejected as
// above. All are matched with errors.Is.
package docstore
