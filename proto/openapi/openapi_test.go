package openapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/drplane/drplane/proto/openapi"
)

func TestSpecDescribesTheAPI(t *testing.T) {
	var doc struct {
		Swagger string                     `json:"swagger"`
		Paths   map[string]json.RawMessage `json:"paths"`
		Defs    map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(openapi.Spec(), &doc); err != nil {
		t.Fatalf("spec is not JSON: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Fatalf("swagger = %q, want 2.0", doc.Swagger)
	}
	for _, p := range []string{"/v1/topology", "/v1/status"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("path %s missing from spec", p)
		}
	}
	// Field names are the proto names (json_names_for_fields=false).
	if _, ok := doc.Defs["v1InstanceStatus"].Properties["seconds_behind_master"]; !ok {
		t.Errorf("v1InstanceStatus.seconds_behind_master missing; got %v", doc.Defs["v1InstanceStatus"].Properties)
	}
}

func TestSpecReturnsCopy(t *testing.T) {
	a := openapi.Spec()
	a[0] = 'X'
	if b := openapi.Spec(); b[0] != '{' {
		t.Fatalf("Spec shares its buffer: first byte %q", b[0])
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(openapi.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if string(body) != string(openapi.Spec()) {
		t.Fatal("GET body differs from Spec()")
	}

	resp, err = http.Post(srv.URL+"/openapi.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", resp.StatusCode)
	}
}
