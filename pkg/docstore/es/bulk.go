package es

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/drplane/drplane/pkg/docstore"
)

// maxIDBytes is Elasticsearch's limit on document ids.
const maxIDBytes = 512

// sourceExcludes hides the id copy from returned documents.
func sourceExcludes() url.Values {
	return url.Values{"_source_excludes": {docstore.ReservedIDField}}
}

// Bulk implements docstore.Store with one _bulk request: index actions for
// replacements, update actions with doc_as_upsert for merges. Operations
// Elasticsearch cannot take (not an object, no id) are rejected before
// sending.
func (s *Store) Bulk(ctx context.Context, index string, ops []docstore.Op) (docstore.BulkResult, error) {
	res := docstore.BulkResult{Items: make([]docstore.BulkItem, len(ops))}
	if err := docstore.ValidateIndexName(index); err != nil {
		return res, err
	}
	var body bytes.Buffer
	var sent []int // positions in ops of the operations in body
	for i, op := range ops {
		res.Items[i].ID = op.ID
		line, doc, err := s.encodeOp(op)
		if err != nil {
			res.Items[i].Err = err
			continue
		}
		body.Write(line)
		body.WriteByte('\n')
		body.Write(doc)
		body.WriteByte('\n')
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return res, nil
	}
	r, err := s.do(ctx, http.MethodPost, "/"+index+"/_bulk", nil, body.Bytes(), true)
	if err != nil {
		return res, err
	}
	if r.status != http.StatusOK {
		return res, classify(r, "bulk into "+index, docstore.ErrInvalid)
	}
	var resp struct {
		Items []map[string]struct {
			ID     string `json:"_id"`
			Status int    `json:"status"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		return res, fmt.Errorf("%w: bulk into %s: decode response: %w", docstore.ErrUnavailable, index, err)
	}
	if len(resp.Items) != len(sent) {
		return res, fmt.Errorf("%w: bulk into %s: %d results for %d operations", docstore.ErrUnavailable, index, len(resp.Items), len(sent))
	}
	for k, item := range resp.Items {
		i := sent[k]
		for _, it := range item { // one key: the action
			switch {
			case it.Status >= 200 && it.Status < 300:
			case it.Status == http.StatusTooManyRequests || it.Status >= 500:
				res.Items[i].Err = fmt.Errorf("%w: %q: status %d: %s", docstore.ErrUnavailable, ops[i].ID, it.Status, itemReason(it.Error))
			default:
				res.Items[i].Err = fmt.Errorf("%w: %q: status %d: %s", docstore.ErrRejected, ops[i].ID, it.Status, itemReason(it.Error))
			}
		}
	}
	return res, nil
}

func itemReason(e *struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}) string {
	if e == nil {
		return "no reason given"
	}
	return e.Type + ": " + e.Reason
}

// encodeOp returns the action line and the source line of op.
func (s *Store) encodeOp(op docstore.Op) ([]byte, []byte, error) {
	switch {
	case op.ID == "":
		return nil, nil, fmt.Errorf("%w: empty id", docstore.ErrRejected)
	case len(op.ID) > maxIDBytes:
		return nil, nil, fmt.Errorf("%w: id longer than %d bytes", docstore.ErrRejected, maxIDBytes)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(op.Doc, &doc); err != nil || doc == nil {
		return nil, nil, fmt.Errorf("%w: %q: document is not a JSON object", docstore.ErrRejected, op.ID)
	}
	if _, ok := doc[docstore.ReservedIDField]; ok {
		return nil, nil, fmt.Errorf("%w: %q: field %s is reserved", docstore.ErrRejected, op.ID, docstore.ReservedIDField)
	}
	id, _ := json.Marshal(op.ID)
	doc[docstore.ReservedIDField] = id
	src, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %q: %w", docstore.ErrRejected, op.ID, err)
	}
	if !op.Merge {
		line, _ := json.Marshal(map[string]any{"index": map[string]any{"_id": op.ID}})
		return line, src, nil
	}
	line, _ := json.Marshal(map[string]any{"update": map[string]any{"_id": op.ID, "retry_on_conflict": s.retryOnConflict}})
	upd, _ := json.Marshal(map[string]any{"doc": json.RawMessage(src), "doc_as_upsert": true})
	return line, upd, nil
}

// Get implements docstore.Store (a realtime GET of _source).
func (s *Store) Get(ctx context.Context, index, id string) (json.RawMessage, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", docstore.ErrInvalid)
	}
	if err := docstore.ValidateIndexName(index); err != nil {
		return nil, err
	}
	r, err := s.do(ctx, http.MethodGet, "/"+index+"/_doc/"+url.PathEscape(id), sourceExcludes(), nil, false)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, classify(r, "get "+index+"/"+id, docstore.ErrInvalid)
	}
	var resp struct {
		Found  bool            `json:"found"`
		Source json.RawMessage `json:"_source"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		return nil, fmt.Errorf("%w: get %s/%s: %w", docstore.ErrUnavailable, index, id, err)
	}
	if !resp.Found {
		return nil, fmt.Errorf("%w: %s/%s", docstore.ErrNotFound, index, id)
	}
	return resp.Source, nil
}
