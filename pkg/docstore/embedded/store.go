package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/docstore"
)

// textAnalyzer splits text fields into lowercase words at Unicode word
// boundaries, like Elasticsearch's standard analyzer (without stop words).
const textAnalyzer = "docstore_text"

// mappingKey is the internal (non-document) key of a bleve index that
// holds its docstore mapping.
const mappingKey = "docstore/mapping"

// Options configure a Store.
type Options struct {
	// Dir holds one subdirectory per index; empty keeps everything in
	// memory.
	Dir string
	// Logger receives index life-cycle events.
	Logger zerolog.Logger
}

// Store is the embedded docstore.Store.
type Store struct {
	opts Options

	mu      sync.Mutex // guards indexes and closed
	indexes map[string]*index
	closed  bool
}

// index is one bleve index and its mapping.
type index struct {
	name string
	path string // "" in memory

	wmu sync.Mutex   // serialises writes and mapping changes
	mu  sync.RWMutex // guards bi and m: read-held while bi is used
	bi  bleve.Index
	m   docstore.Mapping
}

var _ docstore.Store = (*Store)(nil)

// Open returns a store in opts.Dir (created if missing), or in memory when
// Dir is empty. Indexes already in Dir are opened on first use.
func Open(opts Options) (*Store, error) {
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("docstore: embedded: %w", err)
		}
	}
	return &Store{opts: opts, indexes: map[string]*index{}}, nil
}

// lookupIndex returns the open index name, opening it from Dir if needed.
// The caller holds s.mu.
func (s *Store) lookupIndex(name string) (*index, error) {
	if s.closed {
		return nil, fmt.Errorf("%w: store is closed", docstore.ErrUnavailable)
	}
	if ix, ok := s.indexes[name]; ok {
		return ix, nil
	}
	if s.opts.Dir == "" {
		return nil, fmt.Errorf("%w: index %q", docstore.ErrNotFound, name)
	}
	path := filepath.Join(s.opts.Dir, name)
	// A crash while adding fields can leave only the previous copy.
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, perr := os.Stat(path + ".prev"); perr == nil {
			if err := os.Rename(path+".prev", path); err != nil {
				return nil, fmt.Errorf("%w: restore %s: %w", docstore.ErrUnavailable, name, err)
			}
		} else {
			return nil, fmt.Errorf("%w: index %q", docstore.ErrNotFound, name)
		}
	}
	bi, err := bleve.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: open index %q: %w", docstore.ErrUnavailable, name, err)
	}
	m, err := storedMapping(bi)
	if err != nil {
		_ = bi.Close()
		return nil, fmt.Errorf("%w: index %q: %w", docstore.ErrUnavailable, name, err)
	}
	if bi, err = s.upgrade(name, path, bi, m); err != nil {
		return nil, err
	}
	ix := &index{name: name, path: path, bi: bi, m: m}
	s.indexes[name] = ix
	return ix, nil
}

func (s *Store) getIndex(name string) (*index, error) {
	if err := docstore.ValidateIndexName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupIndex(name)
}

func storedMapping(bi bleve.Index) (docstore.Mapping, error) {
	raw, err := bi.GetInternal([]byte(mappingKey))
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("not a docstore index (no mapping)")
	}
	var m docstore.Mapping
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// EnsureIndex implements docstore.Store. Adding fields to an existing index
// rebuilds it from the stored documents.
func (s *Store) EnsureIndex(ctx context.Context, name string, m docstore.Mapping) error {
	if err := docstore.ValidateIndexName(name); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
	}
	s.mu.Lock()
	ix, err := s.lookupIndex(name)
	if errors.Is(err, docstore.ErrNotFound) {
		defer s.mu.Unlock()
		return s.create(name, m)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}

	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	union, added, err := ix.m.Extend(name, m)
	if err != nil || !added {
		return err
	}
	return s.rebuild(ctx, ix, union)
}

// create makes a new index; the caller holds s.mu.
func (s *Store) create(name string, m docstore.Mapping) error {
	path := ""
	if s.opts.Dir != "" {
		path = filepath.Join(s.opts.Dir, name)
	}
	bi, err := newBleve(path, m)
	if err != nil {
		return fmt.Errorf("%w: create index %q: %w", docstore.ErrUnavailable, name, err)
	}
	s.indexes[name] = &index{name: name, path: path, bi: bi, m: m}
	s.opts.Logger.Info().Str("index", name).Int("fields", len(m)).Msg("docstore index created")
	return nil
}

// newBleve creates a bleve index (in memory when path is empty) for m and
// records m in it.
func newBleve(path string, m docstore.Mapping) (bleve.Index, error) {
	im, err := bleveMapping(m)
	if err != nil {
		return nil, err
	}
	var bi bleve.Index
	if path == "" {
		bi, err = bleve.NewMemOnly(im)
	} else {
		bi, err = bleve.New(path, im)
	}
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err == nil {
		err = bi.SetInternal([]byte(mappingKey), raw)
	}
	if err == nil {
		err = bi.SetInternal([]byte(formatKey), []byte(formatCurrent))
	}
	if err != nil {
		_ = bi.Close()
		return nil, err
	}
	return bi, nil
}

// bleveMapping builds the bleve mapping of m: only mapped fields are
// indexed, and nothing is stored but the source (sourceField).
func bleveMapping(m docstore.Mapping) (*mapping.IndexMappingImpl, error) {
	im := bleve.NewIndexMapping()
	if err := im.AddCustomAnalyzer(textAnalyzer, map[string]any{
		"type":          custom.Name,
		"tokenizer":     unicode.Name,
		"token_filters": []any{lowercase.Name},
	}); err != nil {
		return nil, err
	}
	im.DefaultAnalyzer = textAnalyzer
	im.IndexDynamic = false
	im.StoreDynamic = false
	im.DocValuesDynamic = false
	root := bleve.NewDocumentStaticMapping()
	fields := make([]string, 0, len(m))
	for f := range m {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		parts := strings.Split(f, ".")
		dm := root
		for _, p := range parts[:len(parts)-1] {
			sub, ok := dm.Properties[p]
			if !ok {
				sub = bleve.NewDocumentStaticMapping()
				dm.AddSubDocumentMapping(p, sub)
			}
			dm = sub
		}
		dm.AddFieldMappingsAt(parts[len(parts)-1], fieldMapping(m[f]))
	}
	root.AddFieldMappingsAt(sourceField, sourceMapping())
	im.DefaultMapping = root
	return im, nil
}

func fieldMapping(t docstore.FieldType) *mapping.FieldMapping {
	var fm *mapping.FieldMapping
	switch t {
	case docstore.Keyword:
		fm = bleve.NewKeywordFieldMapping()
		fm.IncludeTermVectors = false
	case docstore.Text:
		fm = bleve.NewTextFieldMapping()
		fm.Analyzer = textAnalyzer
		fm.IncludeTermVectors = true // phrase queries need positions
		fm.DocValues = false
	case docstore.Date:
		fm = bleve.NewDateTimeFieldMapping()
	case docstore.Long:
		fm = bleve.NewNumericFieldMapping()
	default:
		fm = bleve.NewBooleanFieldMapping()
	}
	fm.Store = false
	fm.IncludeInAll = false
	return fm
}

// rebuild replaces ix's bleve index by one built for m from the stored
// documents. The caller holds ix.wmu.
func (s *Store) rebuild(ctx context.Context, ix *index, m docstore.Mapping) error {
	ix.mu.RLock()
	nb, n, err := build(ctx, ix.bi, ix.path, m, readSource)
	ix.mu.RUnlock()
	if err != nil {
		return err
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	nb, err = swap(ix.path, ix.bi, nb)
	if err != nil {
		// The index is unusable until the store is reopened.
		s.mu.Lock()
		delete(s.indexes, ix.name)
		s.mu.Unlock()
		return fmt.Errorf("%w: rebuild %q: %w", docstore.ErrUnavailable, ix.name, err)
	}
	ix.bi, ix.m = nb, m
	s.opts.Logger.Info().Str("index", ix.name).Int("docs", n).Int("fields", len(m)).Msg("docstore index rebuilt with new fields")
	return nil
}

// build makes a new bleve index for m beside path (in memory when path is
// empty) holding every document of from, read with src.
func build(ctx context.Context, from bleve.Index, path string, m docstore.Mapping, src sourceReader) (bleve.Index, int, error) {
	newPath := ""
	if path != "" {
		newPath = path + ".rebuild"
		if err := os.RemoveAll(newPath); err != nil {
			return nil, 0, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
		}
	}
	nb, err := newBleve(newPath, m)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: new index: %w", docstore.ErrUnavailable, err)
	}
	n, err := copyDocs(ctx, from, nb, m, src)
	if err != nil {
		_ = nb.Close()
		if newPath != "" {
			_ = os.RemoveAll(newPath)
		}
		return nil, n, err
	}
	return nb, n, nil
}

// swap puts nb, built by build, in the place of old and returns it. On
// error neither is usable.
func swap(path string, old, nb bleve.Index) (bleve.Index, error) {
	if path == "" {
		return nb, old.Close()
	}
	// Swap directories: the old copy stays as .prev until the new one is in
	// place (lookupIndex restores it after a crash).
	err := errors.Join(nb.Close(), old.Close())
	if err == nil {
		err = os.Rename(path, path+".prev")
	}
	if err == nil {
		err = os.Rename(path+".rebuild", path)
	}
	if err == nil {
		err = os.RemoveAll(path + ".prev")
	}
	if err != nil {
		return nil, err
	}
	return bleve.Open(path)
}

// copyDocs indexes every document of from, its source read with src, into
// to under m.
func copyDocs(ctx context.Context, from, to bleve.Index, m docstore.Mapping, src sourceReader) (int, error) {
	var after []string
	n := 0
	for {
		req := bleve.NewSearchRequestOptions(bleve.NewMatchAllQuery(), 500, 0, false)
		req.SortByCustom(search.SortOrder{&search.SortDocID{}})
		req.SearchAfter = after
		res, err := from.SearchInContext(ctx, req)
		if err != nil {
			return n, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
		}
		if len(res.Hits) == 0 {
			return n, nil
		}
		batch := to.NewBatch()
		for _, h := range res.Hits {
			raw, err := src(from, h.ID)
			if err != nil {
				return n, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
			}
			if raw == nil {
				continue
			}
			doc, err := decodeObject(raw)
			if err == nil {
				var idoc map[string]any
				if idoc, err = indexable(m, doc); err == nil {
					err = batch.Index(h.ID, withSource(idoc, raw))
				}
			}
			if err != nil {
				return n, fmt.Errorf("%w: document %q does not fit the new mapping: %w", docstore.ErrMappingConflict, h.ID, err)
			}
			n++
		}
		if err := to.Batch(batch); err != nil {
			return n, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
		}
		after = []string{res.Hits[len(res.Hits)-1].ID}
	}
}

// Close closes every open index.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, ix := range s.indexes {
		ix.mu.Lock()
		errs = append(errs, ix.bi.Close())
		ix.mu.Unlock()
	}
	s.indexes = nil
	return errors.Join(errs...)
}
