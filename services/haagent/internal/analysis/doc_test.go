package analysis_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

// failureModesDoc is docs/failure-modes.md, from this package's directory.
const failureModesDoc = "../../../../docs/failure-modes.md"

// docTable renders the failure table the way docs/failure-modes.md holds it.
func docTable() []string {
	lines := []string{"| Code | Priority | Recovery | Description |", "|---|---|---|---|"}
	for _, p := range analysis.Problems() {
		lines = append(lines, fmt.Sprintf("| %s | %d | %s | %s |", p.Code, p.Priority, p.Recovery, p.Description))
	}
	return lines
}

// TestFailureModesDocInStep fails when the table in docs/failure-modes.md is
// not exactly the analysis table, row for row.
func TestFailureModesDocInStep(t *testing.T) {
	raw, err := os.ReadFile(failureModesDoc)
	require.NoError(t, err)
	var doc []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "|") {
			doc = append(doc, strings.TrimRight(l, " \r"))
		}
	}
	want := docTable()
	require.Equal(t, want, doc,
		"docs/failure-modes.md is out of step with analysis.Problems(); its table should read:\n\n%s\n",
		strings.Join(want, "\n"))
}
