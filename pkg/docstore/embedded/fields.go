package embedded

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/docstore"
)

// decodeObject decodes a JSON object, keeping numbers as json.Number.
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the document")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("document is not a JSON object")
	}
	return obj, nil
}

// merge merges patch into dst the way Elasticsearch merges a partial
// document: objects recursively, every other value replaced.
func merge(dst, patch map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, pv := range patch {
		po, pIsObj := pv.(map[string]any)
		do, dIsObj := dst[k].(map[string]any)
		if pIsObj && dIsObj {
			dst[k] = merge(do, po)
			continue
		}
		dst[k] = pv
	}
	return dst
}

// indexable converts a document into the value bleve indexes: only the
// mapped fields, each converted to its type. It fails where Elasticsearch
// would reject the document.
func indexable(m docstore.Mapping, doc map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for field, typ := range m {
		v, found, err := lookup(doc, field)
		if err != nil {
			return nil, err
		}
		if !found || v == nil {
			continue
		}
		cv, err := convert(field, typ, v)
		if err != nil {
			return nil, err
		}
		if cv == nil {
			continue
		}
		put(out, field, cv)
	}
	return out, nil
}

// lookup finds a dotted field in nested objects.
func lookup(doc map[string]any, field string) (any, bool, error) {
	parts := strings.Split(field, ".")
	var cur any = doc
	for i, p := range parts {
		obj, ok := cur.(map[string]any)
		if !ok {
			if cur == nil {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("field %q: %q is a value, the mapping expects an object", field, strings.Join(parts[:i], "."))
		}
		cur, ok = obj[p]
		if !ok {
			return nil, false, nil
		}
	}
	return cur, true, nil
}

func put(out map[string]any, field string, v any) {
	parts := strings.Split(field, ".")
	cur := out
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = v
}

// convert checks and converts one field value (or array of values).
func convert(field string, typ docstore.FieldType, v any) (any, error) {
	if arr, ok := v.([]any); ok {
		var out []any
		for _, e := range flatten(arr) {
			if e == nil {
				continue
			}
			ce, err := convert(field, typ, e)
			if err != nil {
				return nil, err
			}
			out = append(out, ce)
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	if _, ok := v.(map[string]any); ok {
		return nil, fmt.Errorf("field %q of type %s holds an object", field, typ)
	}
	switch typ {
	case docstore.Keyword, docstore.Text:
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
	case docstore.Long:
		if n, ok := toLong(v); ok {
			return float64(n), nil
		}
		return nil, fmt.Errorf("field %q of type long: %v is not an integer", field, v)
	case docstore.Date:
		if t, ok := toDate(v); ok {
			return t.Truncate(time.Millisecond), nil
		}
		return nil, fmt.Errorf("field %q of type date: cannot parse %v", field, v)
	case docstore.Boolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch x {
			case "true":
				return true, nil
			case "false", "":
				return false, nil
			}
		}
		return nil, fmt.Errorf("field %q of type boolean: %v is not true or false", field, v)
	}
	return nil, fmt.Errorf("field %q of type %s: unexpected value %v", field, typ, v)
}

func flatten(arr []any) []any {
	var out []any
	for _, e := range arr {
		if inner, ok := e.([]any); ok {
			out = append(out, flatten(inner)...)
			continue
		}
		out = append(out, e)
	}
	return out
}

// toLong accepts integers, numbers with a fraction (truncated) and numeric
// strings, as Elasticsearch's coercion does.
func toLong(v any) (int64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f > 9.2e18 || f < -9.2e18 {
		return 0, false
	}
	return int64(f), true
}

// toDate accepts what Elasticsearch's default date format does:
// strict_date_optional_time or epoch milliseconds.
func toDate(v any) (time.Time, bool) {
	switch x := v.(type) {
	case json.Number:
		ms, err := x.Int64()
		if err != nil {
			return time.Time{}, false
		}
		return time.UnixMilli(ms).UTC(), true
	case string:
		t, err := parseDate(x)
		return t, err == nil
	}
	return time.Time{}, false
}

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseDate parses an RFC 3339 date-time, one without a zone (UTC), a
// plain date, or epoch milliseconds.
func parseDate(s string) (time.Time, error) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("cannot parse date %q", s)
}
