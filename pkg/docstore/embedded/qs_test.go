package embedded

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
)

// show renders a parsed query compactly for comparison.
func show(n node) string {
	switch n := n.(type) {
	case allNode:
		return "*:*"
	case existsNode:
		return "exists(" + n.field + ")"
	case termNode:
		s := n.text
		switch {
		case n.phrase:
			s = fmt.Sprintf("%q", s)
		case n.wildcard:
			s = "w:" + s
		}
		if n.field != "" {
			s = n.field + "=" + s
		}
		return s
	case rangeNode:
		lo, hi := n.lo, n.hi
		if n.loOpen {
			lo = "*"
		}
		if n.hiOpen {
			hi = "*"
		}
		l, r := "{", "}"
		if n.loInc {
			l = "["
		}
		if n.hiInc {
			r = "]"
		}
		return n.field + l + lo + "," + hi + r
	case boolNode:
		var parts []string
		for _, c := range n.must {
			parts = append(parts, "+"+show(c))
		}
		for _, c := range n.should {
			parts = append(parts, show(c))
		}
		for _, c := range n.mustNot {
			parts = append(parts, "-"+show(c))
		}
		return "(" + strings.Join(parts, " ") + ")"
	}
	return "?"
}

func TestParseQuery(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "*:*"},
		{"a", "a"},
		{"a b", "(a b)"},
		{"a OR b AND c", "(a (+b +c))"},
		{"a AND b OR c", "((+a +b) c)"},
		{"a && b || !c", "((+a +b) -c)"},
		{"NOT a", "(-a)"},
		{"a AND NOT b", "(+a -b)"},
		{"+a -b c", "(+a c -b)"},
		{"(a OR b) AND c", "(+(a b) +c)"},
		{"f:(a OR b)", "(f=a f=b)"},
		{`f:"x y" g:z`, `(f="x y" g=z)`},
		{`actor:token\:alice`, "actor=token:alice"},
		{`target:dc\-a1\/main`, "target=dc-a1/main"},
		{"dc-a1", "dc-a1"},
		{"f:ab*c?", "f=w:ab*c?"},
		{`f:ab\*`, "f=ab*"},
		{"f:*", "exists(f)"},
		{"*", "*:*"},
		{"_exists_:f", "exists(f)"},
		{"n:[1 TO 5]", "n[1,5]"},
		{"n:{1 TO *]", "n{1,*]"},
		{"t:[2025-03-01T12:00:00Z TO 2025-03-02]", "t[2025-03-01T12:00:00Z,2025-03-02]"},
		{"n:>=10", "n[10,*}"},
		{"n:<3", "n{*,3}"},
		{"a^2 b", "(a b)"},
		{"café", "café"},
	} {
		n, err := parseQuery(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, show(n), c.in)
	}
}

func TestParseQueryErrors(t *testing.T) {
	for _, in := range []string{
		"action:(failover", "a)", "(", `"open`, "a AND", "OR b", "f:", "f:[1 TO", "f:[1 2]",
		"/re/", "a~2", "a:b:c", `a\`, "NOT", "f*:x", "[1 TO 2]", "a^",
	} {
		_, err := parseQuery(in)
		require.Error(t, err, in)
	}
}

// TestParseQueryDepth: nesting of any kind is refused past maxDepth with an
// error, not a stack overflow (4 MiB of '(' used to kill the process).
func TestParseQueryDepth(t *testing.T) {
	for name, in := range map[string]string{
		"parentheses": strings.Repeat("(", 4<<20),
		"NOT":         strings.Repeat("NOT ", 1<<20) + "a",
		"!":           strings.Repeat("!", 4<<20) + "a",
		"field group": "f:" + strings.Repeat("(", 4<<20) + "a",
	} {
		_, err := parseQuery(in)
		require.ErrorContains(t, err, "deeper than", name)
	}
	// Within the bound nesting still parses.
	n, err := parseQuery(strings.Repeat("(", 30) + "a" + strings.Repeat(")", 30))
	require.NoError(t, err)
	require.Equal(t, "a", show(n))
}

// FuzzParseQuery: any input parses or fails with an error; nothing panics
// or recurses without bound, and whatever parses translates (or is refused)
// against the store's mapping without panicking. The seeds are in
// testdata/fuzz/FuzzParseQuery.
func FuzzParseQuery(f *testing.F) {
	tr := translator{m: docstore.Mapping{
		"actor": docstore.Keyword, "message": docstore.Text, "time": docstore.Date,
		"rto_ms": docstore.Long, "automatic": docstore.Boolean, "params.dc": docstore.Keyword,
	}}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parseQuery(in)
		if err != nil {
			require.Nil(t, n)
			return
		}
		require.NotNil(t, n)
		_, _ = tr.node(n)
	})
}
