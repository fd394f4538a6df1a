package charttest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"

	"github.com/drplane/drplane/deploy/charttest"
)

// TestLint runs `helm lint` (Helm's lint package: Chart.yaml, values and
// schema, every template) with each DC's example values and with the
// minimal values: no error and no warning.
func TestLint(t *testing.T) {
	cases := map[string]map[string]any{"minimal": minimalValues()}
	for _, dc := range exampleDCs() {
		cases[dc] = exampleValues(t, dc)
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(charttest.ChartDir, vals, namespace, kubeVersion(t))
			for _, m := range linter.Messages {
				assert.Less(t, m.Severity, support.WarningSev, "%s", m)
			}
		})
	}
}

func kubeVersion(t *testing.T) *chartutil.KubeVersion {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(charttest.DefaultKubeVersion)
	require.NoError(t, err)
	return kv
}

// TestLintNeedsValues: linted without the required values, the chart
// fails on the schema, naming them.
func TestLintNeedsValues(t *testing.T) {
	linter := lint.AllWithKubeVersion(charttest.ChartDir, nil, namespace, kubeVersion(t))
	assert.Equal(t, support.ErrorSev, linter.HighestSeverity)
	var text string
	for _, m := range linter.Messages {
		text += m.Error() + "\n"
	}
	assert.Contains(t, text, schemaError)
	assert.Contains(t, text, "/dc")
}
