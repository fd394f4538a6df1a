package charttest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// secretLeaves returns the values a Secret protects: for a YAML
// configuration file the values under sensitive keys (token hashes,
// passwords, API keys, hook commands), for anything else the whole value.
func secretLeaves(t *testing.T, s *corev1.Secret) []string {
	t.Helper()
	data := map[string]string{}
	for k, v := range s.Data {
		data[k] = string(v)
	}
	for k, v := range s.StringData {
		data[k] = v
	}
	var out []string
	for k, v := range data {
		if !strings.HasSuffix(k, ".yaml") {
			out = append(out, v)
			continue
		}
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(v), &doc), "%s/%s", s.Name, k)
		collectSensitive(doc, false, &out)
	}
	return out
}

// sensitiveKey reports whether a configuration key holds secret material.
func sensitiveKey(k string) bool {
	switch k {
	case "sha256", "password", "repl_password", "api_key", "pre_failover", "post_success", "post_failure":
		return true
	}
	return false
}

func collectSensitive(v any, under bool, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, vv := range x {
			collectSensitive(vv, under || sensitiveKey(k), out)
		}
	case []any:
		for _, vv := range x {
			collectSensitive(vv, under, out)
		}
	case string:
		if under && x != "" {
			*out = append(*out, x)
		}
	}
}

// TestNoSecretInConfigMap: nothing a Secret protects appears in a
// ConfigMap, and no ConfigMap's configuration has a secret key.
func TestNoSecretInConfigMap(t *testing.T) {
	for _, dc := range exampleDCs() {
		t.Run(dc, func(t *testing.T) {
			hook := "--pager-token=hook-secret-" + dc
			r := renderExample(t, dc, set("haagent.config.hooks.post_failure", []any{[]any{"/hooks/page", hook}}))
			var protected []string
			for _, s := range find[*corev1.Secret](r) {
				protected = append(protected, secretLeaves(t, s)...)
			}
			// The example's token hashes and the hook argument are among them.
			assert.Contains(t, protected, "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069")
			assert.Contains(t, protected, hook)

			cms := find[*corev1.ConfigMap](r)
			require.NotEmpty(t, cms)
			for _, cm := range cms {
				for k, v := range cm.Data {
					for _, p := range protected {
						assert.NotContains(t, v, p, "ConfigMap %s/%s holds a Secret's value", cm.Name, k)
					}
					if strings.HasSuffix(k, ".yaml") {
						var doc map[string]any
						require.NoError(t, yaml.Unmarshal([]byte(v), &doc))
						var leaked []string
						collectSensitive(doc, false, &leaked)
						assert.Empty(t, leaked, "ConfigMap %s/%s has secret keys", cm.Name, k)
					}
				}
				assert.Empty(t, cm.BinaryData, cm.Name)
			}
			// Nor does any container carry one as a literal.
			for _, comp := range components() {
				for _, e := range r.container(t, comp).Env {
					for _, p := range protected {
						assert.NotContains(t, e.Value, p, "%s env %s", comp, e.Name)
					}
				}
			}
		})
	}
}
