package es_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/es"
)

func newStore(t *testing.T, opts es.Options) *es.Store {
	t.Helper()
	s, err := es.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func inline(t *testing.T, js string) *httptest.Server {
	t.Helper()
	var c cassette
	require.NoError(t, json.Unmarshal([]byte(js), &c))
	return replay(t, c)
}

// The client refuses a server that does not say it is Elasticsearch.
func TestRefusesOtherProducts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"_index":"i","_id":"x","found":true,"_source":{}}`))
	}))
	t.Cleanup(srv.Close)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})
	_, err := s.Get(t.Context(), "i", "x")
	require.ErrorIs(t, err, docstore.ErrUnavailable)
	require.Contains(t, err.Error(), "not Elasticsearch")
}

// Credentials go in the Authorization header and never into logs.
func TestCredentials(t *testing.T) {
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user [drplane]"}],"type":"security_exception","reason":"unable to authenticate user [drplane]"},"status":401}`))
	}))
	t.Cleanup(srv.Close)

	var logs bytes.Buffer
	const password = "s3cret-Pa55"
	opts := es.Options{Addresses: []string{srv.URL}, Username: "drplane", Password: password, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)}
	s := newStore(t, opts)
	err := s.Refresh(t.Context(), "audit")
	require.ErrorIs(t, err, docstore.ErrUnavailable)
	require.Contains(t, err.Error(), "security_exception")
	require.True(t, strings.HasPrefix(auth.Load().(string), "Basic "))
	require.NotEmpty(t, logs.String(), "the refused request is logged")
	require.NotContains(t, logs.String(), password)
	require.NotContains(t, err.Error(), password)
	require.NotContains(t, opts.String(), password)

	const key = "aWQ6a2V5LXNlY3JldA=="
	opts = es.Options{Addresses: []string{srv.URL}, APIKey: key, Logger: zerolog.New(&logs)}
	s = newStore(t, opts)
	require.ErrorIs(t, s.Refresh(t.Context(), "audit"), docstore.ErrUnavailable)
	require.Equal(t, "APIKey "+key, auth.Load())
	require.NotContains(t, logs.String(), key)
	require.NotContains(t, opts.String(), key)
}

// Ids are escaped in the document path.
func TestGetEscapesID(t *testing.T) {
	var path, raw atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		raw.Store(r.URL.EscapedPath())
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = w.Write([]byte(`{"_index":"ledger","_id":"x","found":true,"_source":{"ok":true}}`))
	}))
	t.Cleanup(srv.Close)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})
	doc, err := s.Get(t.Context(), "ledger", "dc-a:req 1/x?")
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":true}`, string(doc))
	require.Equal(t, "/ledger/_doc/dc-a:req 1/x?", path.Load())
	require.Equal(t, "/ledger/_doc/dc-a:req%201%2Fx%3F", raw.Load())
}

// Overload is retryable, per item and for the whole call; a refused
// document is not.
func TestUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Path == "/audit/_search" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered]"},"status":503}`))
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"took":1,"errors":true,"items":[
			{"index":{"_index":"audit","_id":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
			{"index":{"_index":"audit","_id":"b","status":201,"result":"created"}},
			{"update":{"_index":"audit","_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [time] of type [date]"}}}]}`))
	}))
	t.Cleanup(srv.Close)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})

	res, err := s.Bulk(t.Context(), "audit", []docstore.Op{
		{ID: "a", Doc: json.RawMessage(`{}`)},
		{ID: "b", Doc: json.RawMessage(`{}`)},
		{ID: "c", Doc: json.RawMessage(`{"time":"x"}`), Merge: true},
	})
	require.NoError(t, err)
	require.ErrorIs(t, res.Items[0].Err, docstore.ErrUnavailable)
	require.NoError(t, res.Items[1].Err)
	require.ErrorIs(t, res.Items[2].Err, docstore.ErrRejected)
	require.Contains(t, res.Items[2].Err.Error(), "document_parsing_exception")

	calls.Store(0)
	_, err = s.Search(t.Context(), "audit", docstore.Query{})
	require.ErrorIs(t, err, docstore.ErrUnavailable)
	require.EqualValues(t, 4, calls.Load(), "the client retries a 503 three times")

	srv.Close()
	_, err = s.Get(t.Context(), "audit", "a")
	require.ErrorIs(t, err, docstore.ErrUnavailable)
}

// A document that already holds the reserved id field is refused before
// sending; so is a call with nothing valid to send.
func TestReservedField(t *testing.T) {
	s := newStore(t, es.Options{Addresses: []string{"http://127.0.0.1:1"}, Logger: zerolog.Nop()})
	res, err := s.Bulk(t.Context(), "audit", []docstore.Op{{ID: "a", Doc: json.RawMessage(`{"docstore_id":"b"}`)}})
	require.NoError(t, err)
	require.ErrorIs(t, res.Items[0].Err, docstore.ErrRejected)
}

// Another process creating the index at the same time is not an error.
func TestEnsureIndexRace(t *testing.T) {
	srv := inline(t, `{"interactions":[
	 {"method":"GET","path":"/audit/_mapping","status":404,"response":{"error":{"type":"index_not_found_exception","reason":"no such index [audit]"},"status":404}},
	 {"method":"PUT","path":"/audit","body":{"settings":{"index":{"query":{"default_field":["actor"]}}},"mappings":{"dynamic":false,"properties":{"actor":{"type":"keyword"},"docstore_id":{"type":"keyword"}}}},
	  "status":400,"response":{"error":{"root_cause":[{"type":"resource_already_exists_exception","reason":"index [audit/x] already exists"}],"type":"resource_already_exists_exception","reason":"index [audit/x] already exists"},"status":400}},
	 {"method":"GET","path":"/audit/_mapping","status":200,"response":{"audit":{"mappings":{"dynamic":"false","properties":{"actor":{"type":"keyword"},"docstore_id":{"type":"keyword"}}}}}}
	]}`)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})
	require.NoError(t, s.EnsureIndex(t.Context(), "audit", docstore.Mapping{"actor": docstore.Keyword}))
}

// A conflict Elasticsearch finds (here: a field mapped outside docstore)
// is a mapping conflict.
func TestEnsureIndexServerConflict(t *testing.T) {
	srv := inline(t, `{"interactions":[
	 {"method":"GET","path":"/audit/_mapping","status":200,"response":{"audit":{"mappings":{"properties":{"actor":{"type":"keyword"},"docstore_id":{"type":"keyword"}}}}}},
	 {"method":"PUT","path":"/audit/_mapping","body":{"dynamic":false,"properties":{"actor":{"type":"keyword"},"params":{"properties":{"dc":{"type":"keyword"}}},"docstore_id":{"type":"keyword"}}},
	  "status":400,"response":{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"can't merge a non object mapping [params] with an object mapping"}],"type":"illegal_argument_exception","reason":"can't merge a non object mapping [params] with an object mapping"},"status":400}}
	]}`)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})
	err := s.EnsureIndex(t.Context(), "audit", docstore.Mapping{"actor": docstore.Keyword, "params.dc": docstore.Keyword})
	require.ErrorIs(t, err, docstore.ErrMappingConflict)
	require.Contains(t, err.Error(), "non object mapping")
}

// A search carries the configured timeout; one that ran out of it inside
// Elasticsearch (partial hits, timed_out true) fails as unavailable.
func TestSearchTimeout(t *testing.T) {
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body.Store(string(b))
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = w.Write([]byte(`{"took":1500,"timed_out":true,"hits":{"total":{"value":1,"relation":"eq"},"hits":[{"_id":"a","_source":{},"sort":["a"]}]}}`))
	}))
	t.Cleanup(srv.Close)
	s := newStore(t, es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop(), SearchTimeout: 1500 * time.Millisecond})
	_, err := s.Search(t.Context(), "audit", docstore.Query{Text: "a"})
	require.ErrorIs(t, err, docstore.ErrUnavailable)
	var sent struct {
		Timeout string `json:"timeout"`
		Query   struct {
			QueryString struct {
				AllowLeadingWildcard *bool `json:"allow_leading_wildcard"`
			} `json:"query_string"`
		} `json:"query"`
	}
	require.NoError(t, json.Unmarshal([]byte(body.Load().(string)), &sent))
	require.Equal(t, "1500ms", sent.Timeout)
	require.NotNil(t, sent.Query.QueryString.AllowLeadingWildcard)
	require.False(t, *sent.Query.QueryString.AllowLeadingWildcard)
}
