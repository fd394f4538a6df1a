package es_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// interaction is one recorded request and its answer. The request is
// asserted: method, path, query parameters, and the body compared as JSON
// (ndjson bodies line by line).
type interaction struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Query  string            `json:"query,omitempty"`
	Body   json.RawMessage   `json:"body,omitempty"`
	NDJSON []json.RawMessage `json:"ndjson,omitempty"`

	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

type cassette struct {
	Note         string        `json:"note"`
	Interactions []interaction `json:"interactions"`
}

func loadCassette(t *testing.T, path string) cassette {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var c cassette
	require.NoError(t, json.Unmarshal(raw, &c), path)
	require.NotEmpty(t, c.Interactions, path)
	return c
}

// replay serves the cassette's answers in order, failing t on any request
// that differs from the recording, and checks at cleanup that every
// recorded request was made.
func replay(t *testing.T, c cassette) *httptest.Server {
	var mu sync.Mutex
	next := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		body, _ := io.ReadAll(r.Body)
		if next >= len(c.Interactions) {
			t.Errorf("unexpected request %d: %s %s?%s %s", next, r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"type":"unexpected_request","reason":"not in the recording"},"status":400}`))
			return
		}
		want := c.Interactions[next]
		next++
		if problem := mismatch(want, r, body); problem != "" {
			t.Errorf("request %d (%s %s): %s", next-1, want.Method, want.Path, problem)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"type":"unexpected_request","reason":"differs from the recording"},"status":400}`))
			return
		}
		w.WriteHeader(want.Status)
		_, _ = w.Write(want.Response)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if next != len(c.Interactions) {
			t.Errorf("only %d of %d recorded requests were made; next: %s %s", next, len(c.Interactions),
				c.Interactions[next].Method, c.Interactions[next].Path)
		}
	})
	return srv
}

// mismatch describes how r differs from the recorded request, or is "".
func mismatch(want interaction, r *http.Request, body []byte) string {
	if r.Method != want.Method {
		return "method " + r.Method
	}
	if r.URL.EscapedPath() != want.Path {
		return "path " + r.URL.EscapedPath()
	}
	gotQ, _ := url.ParseQuery(r.URL.RawQuery)
	wantQ, _ := url.ParseQuery(want.Query)
	if len(gotQ)+len(wantQ) > 0 && !reflect.DeepEqual(gotQ, wantQ) {
		return "query " + r.URL.RawQuery
	}
	switch {
	case want.NDJSON != nil:
		if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			return "content type " + ct
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		i := 0
		for sc.Scan() {
			if i >= len(want.NDJSON) {
				return "extra ndjson line " + sc.Text()
			}
			if !jsonEqual(want.NDJSON[i], sc.Bytes()) {
				return "ndjson line " + strconv.Itoa(i) + ": " + sc.Text() + "\n want: " + string(want.NDJSON[i])
			}
			i++
		}
		if i != len(want.NDJSON) {
			return "missing ndjson lines"
		}
		if !bytes.HasSuffix(body, []byte("\n")) {
			return "ndjson body does not end with a newline"
		}
	case want.Body != nil:
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			return "content type " + ct
		}
		if !jsonEqual(want.Body, body) {
			return "body " + string(body) + "\n want: " + string(want.Body)
		}
	case len(body) > 0:
		return "unexpected body " + string(body)
	}
	return ""
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func cassettePath(name string) string {
	return filepath.Join("testdata", name+".json")
}
