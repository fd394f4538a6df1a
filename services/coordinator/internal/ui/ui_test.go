package ui

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drplane/drplane/pkg/state"
)

func TestTopicOf(t *testing.T) {
	h := New(Options{Store: state.New(nil, "/dr")})
	for key, want := range map[string]Topic{
		"/dr/topology":                      TopicTopology,
		"/dr/status/dc-a1/main/dc-a1-db1":   TopicStatus,
		"/dr/masters/dc-a1/main":            TopicStatus,
		"/dr/shardmaps/orders":              TopicShards,
		"/dr/operations/evacuate-1":         TopicOperations,
		"/dr/failovers/dc-a1/main/x":        TopicFailovers,
		"/dr/audit-outbox/0001":             TopicAudit,
		"/dr/watermarks/dc-b1/dc-a1/orders": TopicRepl,
		"/dr/elections/haagent/dc-a1/1":     "",
		"/dr/statusx":                       "",
		"/other/topology":                   "",
	} {
		assert.Equal(t, want, h.topicOf(key), key)
	}
}

func TestStatic(t *testing.T) {
	h := New(Options{Store: state.New(nil, "")})
	for path, ctype := range map[string]string{
		"/ui/":                   "text/html; charset=utf-8",
		"/ui/app.css":            "text/css; charset=utf-8",
		"/ui/js/main.js":         "text/javascript; charset=utf-8",
		"/ui/js/views/shards.js": "text/javascript; charset=utf-8",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusOK, w.Code, path)
		assert.Equal(t, ctype, w.Header().Get("Content-Type"), path)
		assert.Equal(t, "no-cache", w.Header().Get("Cache-Control"), path)
		assert.Contains(t, w.Header().Get("Content-Security-Policy"), "script-src 'self'", path)
		assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), path)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ui", nil))
	assert.Equal(t, http.StatusMovedPermanently, w.Code)
	assert.Equal(t, "/ui/", w.Header().Get("Location"))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ui/app.css", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ui/nope.js", nil))
	assert.Equal(t, http.StatusNotFound, w.Code)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ui/js/", nil))
	assert.Equal(t, http.StatusNotFound, w.Code, "no directory listing")
}
