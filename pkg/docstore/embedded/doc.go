// Package embedded is the in-process docstore.Store: one bleve index per
// docstore index, in a subdirectory of Options.Dir or in memory.
//
// Documents are kept verbatim in a stored, unindexed field of their bleve
// document (written with the index entries, compacted with them by the
// segment merger), so Get returns exactly what was written and merges read
// the stored JSON. Only mapped fields are indexed,
// converted and checked the way Elasticsearch would, so a document
// Elasticsearch would reject is rejected here too.
//
// Query.Text is parsed by this package (bleve's own query string has no
// AND/OR/NOT or parentheses) and translated to bleve queries, field by field
// according to the mapping. Differences from Elasticsearch's query_string:
// operators follow ordinary precedence (NOT over AND over OR) where Lucene
// applies its left-to-right clause flags, so write parentheses when mixing
// AND and OR; regular expressions (/re/), fuzzy and proximity (~) and
// wildcard field names are refused with ErrBadQuery (and, on both
// backends, leading wildcards and queries beyond docstore's limits; the
// parser bounds its own recursion for any input); boosts are ignored;
// bare words search keyword, text and long fields (as the Elasticsearch
// backend's index.query.default_field does), never date or boolean ones;
// a time window or range on a field of the wrong type is a bad query.
//
// Adding fields with EnsureIndex rebuilds the index from the stored
// documents (Elasticsearch leaves existing documents unindexed for the new
// field until they are written again). Writes to one index are serialised;
// searches run concurrently with them.
package embedded
