package es

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/docstore"
)

// Options configure a Store.
type Options struct {
	// Addresses are the node URLs, such as "https://es-1:9200".
	Addresses []string
	// Username and Password authenticate with HTTP basic auth. The password
	// is never logged.
	Username string
	Password string
	// APIKey (base64 "id:key") authenticates instead; never logged.
	APIKey string
	// CACert is a PEM bundle of the authorities that sign the nodes'
	// certificates; empty uses the system roots.
	CACert []byte
	// TLS configures the client side of TLS (client certificates, server
	// name); nil uses defaults.
	TLS *tls.Config
	// RetryOnConflict is how often a merge retries a version conflict
	// inside Elasticsearch; 0 means 5.
	RetryOnConflict int
	// SearchTimeout bounds the time a search runs inside Elasticsearch
	// (the request's "timeout"); 0 means DefaultSearchTimeout. A search
	// that runs out of it fails with docstore.ErrUnavailable rather than
	// returning partial hits.
	SearchTimeout time.Duration
	// Logger receives failed requests (method, path, status, reason).
	Logger zerolog.Logger
}

// String describes the options without secrets.
func (o Options) String() string {
	auth := "none"
	switch {
	case o.APIKey != "":
		auth = "api-key"
	case o.Username != "":
		auth = "basic(" + o.Username + ")"
	}
	return fmt.Sprintf("es.Options{Addresses:%v Auth:%s CACert:%t TLS:%t}", o.Addresses, auth, len(o.CACert) > 0, o.TLS != nil)
}

// Store is the Elasticsearch docstore.Store.
type Store struct {
	c               *elasticsearch.Client
	log             zerolog.Logger
	retryOnConflict int
	searchTimeout   time.Duration
}

// DefaultSearchTimeout is Options.SearchTimeout when unset.
const DefaultSearchTimeout = 10 * time.Second

var _ docstore.Store = (*Store)(nil)

// New returns a store talking to the cluster at opts.Addresses. It does
// not contact the cluster.
func New(opts Options) (*Store, error) {
	if len(opts.Addresses) == 0 {
		return nil, fmt.Errorf("%w: no Elasticsearch addresses", docstore.ErrInvalid)
	}
	cfg := elasticsearch.Config{
		Addresses:         opts.Addresses,
		Username:          opts.Username,
		Password:          opts.Password,
		APIKey:            opts.APIKey,
		CACert:            opts.CACert,
		DisableMetaHeader: true,
	}
	if opts.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = opts.TLS.Clone()
		cfg.Transport = tr
	}
	c, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: elasticsearch client: %w", docstore.ErrInvalid, err)
	}
	s := &Store{c: c, log: opts.Logger, retryOnConflict: opts.RetryOnConflict, searchTimeout: opts.SearchTimeout}
	if s.retryOnConflict == 0 {
		s.retryOnConflict = 5
	}
	if s.searchTimeout <= 0 {
		s.searchTimeout = DefaultSearchTimeout
	}
	return s, nil
}

// Close implements docstore.Store.
func (s *Store) Close() error {
	err := s.c.Close(context.Background())
	if errors.Is(err, elasticsearch.ErrAlreadyClosed) {
		return nil
	}
	return err
}

// response is a status and body read in full.
type response struct {
	status int
	body   []byte
}

// do sends one request; the error is for requests that got no answer.
func (s *Store) do(ctx context.Context, method, path string, query url.Values, body []byte, ndjson bool) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", docstore.ErrInvalid, err)
	}
	if len(query) > 0 {
		req.URL.RawQuery = query.Encode()
	}
	if body != nil {
		ct := "application/json"
		if ndjson {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	res, err := s.c.Perform(req)
	if err != nil {
		s.log.Debug().Str("method", method).Str("path", path).Err(err).Msg("elasticsearch request failed")
		return response{}, fmt.Errorf("%w: %s %s: %w", docstore.ErrUnavailable, method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%w: %s %s: read response: %w", docstore.ErrUnavailable, method, path, err)
	}
	if res.StatusCode >= 300 {
		s.log.Debug().Str("method", method).Str("path", path).Int("status", res.StatusCode).
			Str("reason", reasonOf(b)).Msg("elasticsearch request refused")
	}
	return response{status: res.StatusCode, body: b}, nil
}

// esError is Elasticsearch's error body.
type esError struct {
	Error struct {
		Type      string `json:"type"`
		Reason    string `json:"reason"`
		RootCause []struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"root_cause"`
	} `json:"error"`
}

func errorType(body []byte) string {
	var e esError
	_ = json.Unmarshal(body, &e)
	return e.Error.Type
}

// reasonOf summarises an error body ("type: reason" of its root cause).
func reasonOf(body []byte) string {
	var e esError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Type == "" {
		if len(body) > 200 {
			body = body[:200]
		}
		return strings.TrimSpace(string(body))
	}
	if len(e.Error.RootCause) > 0 && e.Error.RootCause[0].Reason != "" {
		return e.Error.RootCause[0].Type + ": " + e.Error.RootCause[0].Reason
	}
	return e.Error.Type + ": " + e.Error.Reason
}

// classify turns a refused request into an error; bad is the sentinel for
// 400 answers.
func classify(r response, what string, bad error) error {
	reason := reasonOf(r.body)
	switch {
	case r.status == http.StatusNotFound:
		return fmt.Errorf("%w: %s: %s", docstore.ErrNotFound, what, reason)
	case r.status == http.StatusTooManyRequests, r.status >= 500,
		r.status == http.StatusUnauthorized, r.status == http.StatusForbidden:
		return fmt.Errorf("%w: %s: status %d: %s", docstore.ErrUnavailable, what, r.status, reason)
	case r.status == http.StatusBadRequest && errors.Is(bad, docstore.ErrBadQuery):
		return &docstore.QueryError{Reason: reason}
	case r.status == http.StatusBadRequest && bad != nil:
		return fmt.Errorf("%w: %s: %s", bad, what, reason)
	}
	return fmt.Errorf("%w: %s: status %d: %s", docstore.ErrInvalid, what, r.status, reason)
}

// EnsureIndex implements docstore.Store: it creates the index with an
// explicit mapping (dynamic false) and an index template carrying the same
// mapping, or adds new fields to both.
func (s *Store) EnsureIndex(ctx context.Context, index string, m docstore.Mapping) error {
	if err := docstore.ValidateIndexName(index); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.mapping(ctx, index)
		if errors.Is(err, docstore.ErrNotFound) {
			err = s.create(ctx, index, m)
			if errors.Is(err, errExists) && attempt == 0 {
				continue // created meanwhile by someone else
			}
			return err
		}
		if err != nil {
			return err
		}
		return s.extend(ctx, index, cur, m)
	}
}

var errExists = errors.New("docstore: es: index exists")

func (s *Store) create(ctx context.Context, index string, m docstore.Mapping) error {
	body, _ := json.Marshal(map[string]any{"settings": settingsBody(m), "mappings": mappingBody(m)})
	r, err := s.do(ctx, http.MethodPut, "/"+index, nil, body, false)
	if err != nil {
		return err
	}
	if r.status == http.StatusBadRequest && errorType(r.body) == "resource_already_exists_exception" {
		return errExists
	}
	if r.status != http.StatusOK {
		return classify(r, "create index "+index, docstore.ErrInvalid)
	}
	s.log.Info().Str("index", index).Int("fields", len(m)).Msg("docstore index created")
	return s.putTemplate(ctx, index, m)
}

// extend adds the fields of m missing from the index's current mapping.
func (s *Store) extend(ctx context.Context, index string, cur, m docstore.Mapping) error {
	union, added, err := cur.Extend(index, m)
	if err != nil || !added {
		return err
	}
	body, _ := json.Marshal(mappingBody(union))
	r, err := s.do(ctx, http.MethodPut, "/"+index+"/_mapping", nil, body, false)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return classify(r, "put mapping of "+index, docstore.ErrMappingConflict)
	}
	body, _ = json.Marshal(settingsBody(union))
	if r, err = s.do(ctx, http.MethodPut, "/"+index+"/_settings", nil, body, false); err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return classify(r, "put settings of "+index, docstore.ErrInvalid)
	}
	s.log.Info().Str("index", index).Int("fields", len(union)).Msg("docstore index fields added")
	return s.putTemplate(ctx, index, union)
}

func (s *Store) putTemplate(ctx context.Context, index string, m docstore.Mapping) error {
	body, _ := json.Marshal(map[string]any{
		"index_patterns": []string{index},
		"priority":       500,
		"template":       map[string]any{"settings": settingsBody(m), "mappings": mappingBody(m)},
		"_meta":          map[string]any{"managed_by": "drplane-docstore"},
	})
	r, err := s.do(ctx, http.MethodPut, "/_index_template/"+templateName(index), nil, body, false)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return classify(r, "put index template for "+index, docstore.ErrInvalid)
	}
	return nil
}

// templateName is the index template that recreates index with its mapping
// if the index is deleted and then written to.
func templateName(index string) string { return "docstore-" + index }

// mapping reads the index's field mapping.
func (s *Store) mapping(ctx context.Context, index string) (docstore.Mapping, error) {
	r, err := s.do(ctx, http.MethodGet, "/"+index+"/_mapping", nil, nil, false)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, classify(r, "get mapping of "+index, docstore.ErrInvalid)
	}
	var resp map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		return nil, fmt.Errorf("%w: mapping of %s: %w", docstore.ErrUnavailable, index, err)
	}
	m := docstore.Mapping{}
	for _, v := range resp { // one entry, keyed by the concrete index name
		if err := flattenProps("", v.Mappings.Properties, m); err != nil {
			return nil, fmt.Errorf("%w: mapping of %s: %w", docstore.ErrUnavailable, index, err)
		}
	}
	delete(m, docstore.ReservedIDField)
	return m, nil
}

func flattenProps(prefix string, props map[string]json.RawMessage, out docstore.Mapping) error {
	for name, raw := range props {
		var p struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		if p.Properties != nil {
			if err := flattenProps(prefix+name+".", p.Properties, out); err != nil {
				return err
			}
			continue
		}
		out[prefix+name] = docstore.FieldType(p.Type)
	}
	return nil
}

// mappingBody is the Elasticsearch mapping of m: unmapped fields are kept
// in _source but not indexed (dynamic false); docstore_id is the id copy
// used to sort.
func mappingBody(m docstore.Mapping) map[string]any {
	props := map[string]any{docstore.ReservedIDField: map[string]any{"type": "keyword"}}
	for field, typ := range m {
		parts := strings.Split(field, ".")
		cur := props
		for _, p := range parts[:len(parts)-1] {
			obj, ok := cur[p].(map[string]any)
			if !ok {
				obj = map[string]any{"properties": map[string]any{}}
				cur[p] = obj
			}
			cur = obj["properties"].(map[string]any)
		}
		cur[parts[len(parts)-1]] = map[string]any{"type": string(typ)}
	}
	return map[string]any{"dynamic": false, "properties": props}
}

// settingsBody makes bare query words search the keyword, text and long
// fields (not the id copy, dates or booleans).
func settingsBody(m docstore.Mapping) map[string]any {
	var fields []string
	for f, t := range m {
		switch t {
		case docstore.Keyword, docstore.Text, docstore.Long:
			fields = append(fields, f)
		}
	}
	sort.Strings(fields)
	if len(fields) == 0 {
		fields = []string{"*"}
	}
	return map[string]any{"index": map[string]any{"query": map[string]any{"default_field": fields}}}
}
