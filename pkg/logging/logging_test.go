package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONFields(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{Level: "info", Format: "json"}, map[string]string{"service": "haagent", "dc": "dc-a1"})
	log.Debug().Msg("hidden")
	log.Info().Msg("hello")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if line["service"] != "haagent" || line["dc"] != "dc-a1" || line["message"] != "hello" {
		t.Fatalf("line = %v", line)
	}
}

func TestConsoleAndValidate(t *testing.T) {
	var buf bytes.Buffer
	clog := New(&buf, Options{Level: "debug", Format: "console"}, nil)
	clog.Debug().Msg("dbg")
	if !strings.Contains(buf.String(), "dbg") || strings.HasPrefix(buf.String(), "{") {
		t.Fatalf("console output = %q", buf.String())
	}
	if err := (Options{Level: "loud", Format: "json"}).Validate(); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("bad level accepted: %v", err)
	}
	if err := (Options{Level: "info", Format: "xml"}).Validate(); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Fatalf("bad format accepted: %v", err)
	}
}
