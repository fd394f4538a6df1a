package dclive

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestArchitectureDocInStep fails when the table of DC liveness codes in
// docs/architecture.md does not list Codes, in order.
func TestArchitectureDocInStep(t *testing.T) {
	raw, err := os.ReadFile("../../../../docs/architecture.md")
	require.NoError(t, err)
	var doc []Code
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "| `DC") {
			doc = append(doc, Code(strings.Trim(strings.Fields(l)[1], "`")))
		}
	}
	want := make([]Code, len(Codes))
	for i, d := range Codes {
		want[i] = d.Code
	}
	require.Equal(t, want, doc, "docs/architecture.md's DC liveness table is out of step with dclive.Codes")
}
