package openapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// spec is the merged OpenAPI document. A string, so it cannot be mutated.
//
//go:embed drplane.swagger.json
var spec string

// Spec returns a copy of the OpenAPI document (JSON).
func Spec() []byte {
	return []byte(spec)
}

// Handler serves the OpenAPI document as application/json on GET and HEAD.
func Handler() http.Handler {
	body := []byte(spec)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(spec)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
