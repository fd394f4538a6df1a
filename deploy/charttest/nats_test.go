package charttest_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// TestNATSServerConfig parses each DC's rendered NATS settings with
// nats-server's own configuration parser: JetStream domain = DC name,
// leafnode interest isolated, and across the three DCs exactly one
// leafnode link per pair.
func TestNATSServerConfig(t *testing.T) {
	dials := map[string][]string{}
	for _, dc := range exampleDCs() {
		r := renderExample(t, dc)
		cm, ok := find[*corev1.ConfigMap](r)[r.name+"-nats-server"]
		require.True(t, ok, dc)
		parsed, err := conf.Parse(cm.Data["drplane.conf"])
		require.NoError(t, err, "%s:\n%s", dc, cm.Data["drplane.conf"])

		js, ok := parsed["jetstream"].(map[string]any)
		require.True(t, ok, dc)
		assert.Equal(t, dc, js["domain"])
		leaf, ok := parsed["leafnodes"].(map[string]any)
		require.True(t, ok, dc)
		assert.EqualValues(t, 7422, leaf["port"])
		assert.Equal(t, true, leaf["isolate_leafnode_interest"])
		remotes, ok := leaf["remotes"].([]any)
		require.True(t, ok, dc)
		for _, rem := range remotes {
			urls, ok := rem.(map[string]any)["urls"].([]any)
			require.True(t, ok)
			require.Len(t, urls, 1)
			dials[dc] = append(dials[dc], urls[0].(string))
		}
		assert.Equal(t, peersOf(t, r), cm.Data["peers"])
	}
	assert.Equal(t, map[string][]string{
		"dc-a2": {"nats-leaf://nats-leaf.dc-a1.example.com:7422"},
		"dc-b1": {"nats-leaf://nats-leaf.dc-a1.example.com:7422", "nats-leaf://nats-leaf.dc-a2.example.com:7422"},
	}, dials, "one link per pair of DCs")
}

func peersOf(t *testing.T, r *release) string {
	t.Helper()
	peers := r.vals["nats"].(map[string]any)["peers"].([]any)
	var out string
	for i, p := range peers {
		if i > 0 {
			out += ","
		}
		out += p.(map[string]any)["dc"].(string)
	}
	return out
}
