package audit

import (
	"fmt"
	"sort"
	"unicode/utf8"
)

// Bounds of an event as stored. Much of an event comes from callers (a
// reason, a target, a forwarded address, the error a refused call got);
// without a bound a caller writes up to etcd's request limit per refused
// call and fills its quota, after which no master record or failover claim
// can be written.
const (
	// MaxFieldBytes bounds each string field and each parameter value.
	MaxFieldBytes = 1024
	// MaxParams bounds the number of parameters.
	MaxParams = 32
	// maxParamKeyBytes bounds a parameter name.
	maxParamKeyBytes = 64
)

// Bounded returns e with every caller-controllable field cut to the
// bounds: strings to MaxFieldBytes (marked with how much was cut), at most
// MaxParams parameters (the first by name; "params_dropped" counts the
// rest). ID and Action are the writer's own and kept.
func (e Event) Bounded() Event {
	e.Actor = cut(e.Actor, MaxFieldBytes)
	e.Target = cut(e.Target, MaxFieldBytes)
	e.Outcome = cut(e.Outcome, MaxFieldBytes)
	e.Error = cut(e.Error, MaxFieldBytes)
	if len(e.Params) == 0 {
		return e
	}
	keys := make([]string, 0, len(e.Params))
	for k := range e.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, min(len(keys), MaxParams+1))
	for i, k := range keys {
		if i == MaxParams {
			out["params_dropped"] = fmt.Sprint(len(keys) - MaxParams)
			break
		}
		out[cut(k, maxParamKeyBytes)] = cut(e.Params[k], MaxFieldBytes)
	}
	e.Params = out
	return e
}

// cut shortens s to at most n bytes at a rune boundary, ending it with a
// note of how many bytes were cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	note := fmt.Sprintf("…(%d bytes cut)", len(s)-n)
	end := max(n-len(note), 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + note
}
