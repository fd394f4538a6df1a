package embedded

import (
	"context"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/mapping"
	bleveindex "github.com/blevesearch/bleve_index_api"

	"github.com/drplane/drplane/pkg/docstore"
)

// sourceField is the stored, unindexed field that keeps each document's
// JSON as written. Mapped field names cannot start with '_', so it never
// meets one. Stored fields live in the index segments, which the merger
// compacts as documents are replaced.
const sourceField = "_source"

// Format versions, under formatKey. Indexes written before formatKey
// existed kept sources under internal keys (srcPrefix + id); the index's
// persister copies every internal key into every snapshot it writes, so
// the store grew with documents times writes. Such an index is rebuilt
// into the current format when it is opened.
const (
	formatKey     = "docstore/format"
	formatCurrent = "source-field"
	srcPrefix     = "docstore/src/"
)

// sourceMapping stores the source without indexing it.
func sourceMapping() *mapping.FieldMapping {
	fm := bleve.NewTextFieldMapping()
	fm.Index = false
	fm.Store = true
	fm.IncludeTermVectors = false
	fm.IncludeInAll = false
	fm.DocValues = false
	return fm
}

// sourceReader reads the stored JSON of document id of an index, nil when
// there is none.
type sourceReader func(bi bleve.Index, id string) ([]byte, error)

// readSource reads a document's source from its stored field.
func readSource(bi bleve.Index, id string) ([]byte, error) {
	doc, err := bi.Document(id)
	if err != nil || doc == nil {
		return nil, err
	}
	var raw []byte
	doc.VisitFields(func(f bleveindex.Field) {
		if f.Name() == sourceField {
			raw = append([]byte(nil), f.Value()...)
		}
	})
	return raw, nil
}

// readLegacySource reads a source of an index in the old format.
func readLegacySource(bi bleve.Index, id string) ([]byte, error) {
	return bi.GetInternal([]byte(srcPrefix + id))
}

// upgrade returns bi, opened from path, in the current format: an index
// of the old format is rebuilt (and closed). The caller holds s.mu.
func (s *Store) upgrade(name, path string, bi bleve.Index, m docstore.Mapping) (bleve.Index, error) {
	raw, err := bi.GetInternal([]byte(formatKey))
	if err != nil {
		_ = bi.Close()
		return nil, fmt.Errorf("%w: index %q: %w", docstore.ErrUnavailable, name, err)
	}
	if string(raw) == formatCurrent {
		return bi, nil
	}
	nb, n, err := build(context.Background(), bi, path, m, readLegacySource)
	if err == nil {
		nb, err = swap(path, bi, nb)
	} else {
		_ = bi.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: upgrade index %q: %w", docstore.ErrUnavailable, name, err)
	}
	s.opts.Logger.Info().Str("index", name).Int("docs", n).Msg("docstore index upgraded: sources moved from internal keys to a stored field")
	return nb, nil
}

// withSource adds the source raw to idoc, the indexed fields of a document.
func withSource(idoc map[string]any, raw []byte) map[string]any {
	idoc[sourceField] = string(raw)
	return idoc
}
