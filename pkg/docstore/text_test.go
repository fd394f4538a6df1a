package docstore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckText(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("(", n) + "a" + strings.Repeat(")", n) }
	for _, ok := range []string{
		"", "a", "*", "*:*", "f:*", "f:* AND g:x", "(f:*)", "promot*", "action:killswitch.*", "a?c",
		`target:dc\-a1\/main`, `f:\*foo`, `"*foo /x/"`, "rto_ms:[1000 TO *]", "t:{* TO 2025-03-01/d]",
		"-f:* +g:a*", "f:*^2", deep(MaxNesting), strings.Repeat("a", MaxTextBytes),
	} {
		require.NoError(t, checkText(ok), ok)
	}
	for in, reason := range map[string]string{
		strings.Repeat("a", MaxTextBytes+1): "MaxTextBytes",
		deep(MaxNesting + 1):                "MaxNesting",
		"/re/":                              "regular expressions",
		"a:b/c":                             "regular expressions",
		"*foo":                              "wildcard",
		"f:?x":                              "wildcard",
		"a OR -*x":                          "wildcard",
		"(**)":                              "wildcard",
		"f:(a OR *b)":                       "wildcard",
	} {
		err := checkText(in)
		require.ErrorIs(t, err, ErrBadQuery, in)
		require.ErrorContains(t, err, reason, in)
	}
}
