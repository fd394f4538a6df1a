package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/drplane/drplane/pkg/docstore"
)

// maxIDBytes is Elasticsearch's limit on document ids.
const maxIDBytes = 512

// Bulk implements docstore.Store. Writes to one index are serialised; a
// call's accepted operations become durable and searchable together.
func (s *Store) Bulk(ctx context.Context, name string, ops []docstore.Op) (docstore.BulkResult, error) {
	res := docstore.BulkResult{Items: make([]docstore.BulkItem, len(ops))}
	ix, err := s.getIndex(name)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.mu.RLock()
	defer ix.mu.RUnlock()

	batch := ix.bi.NewBatch()
	pending := map[string]map[string]any{} // documents as this call leaves them
	for i, op := range ops {
		res.Items[i].ID = op.ID
		doc, raw, err := ix.prepare(op, pending)
		if err != nil {
			res.Items[i].Err = err
			continue
		}
		idoc, err := indexable(ix.m, doc)
		if err == nil {
			err = batch.Index(op.ID, withSource(idoc, raw))
		}
		if err != nil {
			res.Items[i].Err = fmt.Errorf("%w: %q: %w", docstore.ErrRejected, op.ID, err)
			continue
		}
		pending[op.ID] = doc
	}
	if batch.Size() == 0 {
		return res, nil
	}
	if err := ix.bi.Batch(batch); err != nil {
		return res, fmt.Errorf("%w: bulk into %q: %w", docstore.ErrUnavailable, name, err)
	}
	return res, nil
}

// prepare returns the document op leaves behind and its JSON.
func (ix *index) prepare(op docstore.Op, pending map[string]map[string]any) (map[string]any, []byte, error) {
	switch {
	case op.ID == "":
		return nil, nil, fmt.Errorf("%w: empty id", docstore.ErrRejected)
	case len(op.ID) > maxIDBytes:
		return nil, nil, fmt.Errorf("%w: id longer than %d bytes", docstore.ErrRejected, maxIDBytes)
	}
	doc, err := decodeObject(op.Doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %q: %w", docstore.ErrRejected, op.ID, err)
	}
	if !op.Merge {
		var buf bytes.Buffer
		if err := json.Compact(&buf, op.Doc); err != nil {
			return nil, nil, fmt.Errorf("%w: %q: %w", docstore.ErrRejected, op.ID, err)
		}
		return doc, buf.Bytes(), nil
	}
	cur, ok := pending[op.ID]
	if ok {
		cur = deepCopy(cur)
	} else {
		raw, err := readSource(ix.bi, op.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: read %q: %w", docstore.ErrUnavailable, op.ID, err)
		}
		if raw != nil {
			if cur, err = decodeObject(raw); err != nil {
				return nil, nil, fmt.Errorf("%w: stored %q: %w", docstore.ErrUnavailable, op.ID, err)
			}
		}
	}
	doc = merge(cur, doc)
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %q: %w", docstore.ErrRejected, op.ID, err)
	}
	return doc, raw, nil
}

func deepCopy(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, e := range v {
		out[k] = copyValue(e)
	}
	return out
}

func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopy(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	}
	return v
}

// Get implements docstore.Store.
func (s *Store) Get(ctx context.Context, name, id string) (json.RawMessage, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", docstore.ErrInvalid)
	}
	ix, err := s.getIndex(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", docstore.ErrUnavailable, err)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	raw, err := readSource(ix.bi, id)
	if err != nil {
		return nil, fmt.Errorf("%w: get %q: %w", docstore.ErrUnavailable, id, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: %s/%s", docstore.ErrNotFound, name, id)
	}
	return json.RawMessage(raw), nil
}

// Refresh implements docstore.Store; writes are searchable as soon as Bulk
// returns, so it only checks that the index exists.
func (s *Store) Refresh(_ context.Context, name string) error {
	_, err := s.getIndex(name)
	return err
}
