// Package es is the Elasticsearch 8 docstore.Store, on the official Go
// client (github.com/elastic/go-elasticsearch/v8), which refuses servers
// that do not answer with "X-Elastic-Product: Elasticsearch".
//
// Wire format, one request per call:
//   - EnsureIndex: GET /<index>/_mapping; if absent PUT /<index> with
//     settings (index.query.default_field: the keyword, text and long
//     fields) and an explicit mapping (dynamic: false), then PUT
//     /_index_template/docstore-<index> with the same, so that an index
//     deleted and written again comes back with its mapping; if present and
//     fields were added, PUT /<index>/_mapping, PUT /<index>/_settings and
//     the template again. A changed field type is refused before anything
//     is written.
//   - Bulk: POST /<index>/_bulk with "index" actions for replacements and
//     "update" actions (doc_as_upsert, retry_on_conflict) for merges.
//   - Get: GET /<index>/_doc/<id>.
//   - Search: POST /<index>/_search with a query_string query (lenient),
//     bool filters (terms, range), sort on the field then the id copy,
//     search_after from the cursor, track_total_hits.
//   - Refresh: POST /<index>/_refresh.
//
// Every document carries a keyword copy of its id in the reserved field
// docstore_id (Elasticsearch 8 cannot sort on _id); it is added on write
// and excluded from the documents returned. Ids containing '/' need
// addresses without a path prefix.
//
// Errors: 404 is docstore.ErrNotFound; 429, 5xx, 401, 403 and transport
// failures are docstore.ErrUnavailable; a 400 from _search is a
// *docstore.QueryError; per-item bulk failures are docstore.ErrRejected
// (or ErrUnavailable for 429/5xx items).
package es
