package charttest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/drplane/drplane/deploy/charttest"
)

// schemaError is how Helm reports values that fail values.schema.json.
const schemaError = "values don't meet the specifications of the schema"

func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		// want are the parts of the error naming the value.
		want []string
	}{
		{"no dc", del("dc"), []string{"at '/dc': minLength"}},
		{"empty dc", set("dc", ""), []string{"/dc"}},
		{"dc not a name", set("dc", "dc a1"), []string{"/dc"}},
		{"no city", del("city"), []string{"at '/city': minLength"}},
		{"no etcd endpoints", set("etcd.endpoints", []any{}), []string{"/etcd/endpoints", "minItems"}},
		{"etcd endpoint not a URL", set("etcd.endpoints", []any{"etcd:2379"}), []string{"/etcd/endpoints/0"}},
		{"no nats url", del("nats.url"), []string{"at '/nats/url': minLength"}},
		{"empty nats url", set("nats.url", ""), []string{"/nats/url"}},
		{"no agent secret", del("haagent.mysql.existingSecret"), []string{"at '/haagent/mysql/existingSecret': minLength"}},
		{"no agent user", set("haagent.mysql.user", ""), []string{"/haagent/mysql/user"}},
		{"no reship secret", set("reship.mysql.existingSecret", ""), []string{"/reship/mysql/existingSecret"}},
		{"no collector secret", set("collector.mysql.existingSecret", ""), []string{"/collector/mysql/existingSecret"}},
		{"no tokens", set("coordinator.auth.tokens", []any{}), []string{"/coordinator/auth/tokens", "minItems"}},
		{"token not a sha256", set("coordinator.auth.tokens", []any{map[string]any{"name": "a", "role": "admin", "sha256": "secret"}}), []string{"/coordinator/auth/tokens/0/sha256"}},
		{"unknown role", set("coordinator.auth.tokens", []any{map[string]any{"name": "a", "role": "root", "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}), []string{"/coordinator/auth/tokens/0/role"}},
		{"one agent", set("haagent.replicas", 1), []string{"/haagent/replicas", "minimum"}},
		{"etcd tls without secret", set("etcd.tls.existingSecret", ""), []string{"/etcd/tls/existingSecret"}},
		{"etcd user without secret", set("etcd.auth.username", "drplane"), []string{"/etcd/auth", "existingSecret"}},
		{"elasticsearch without addresses", set("coordinator.audit.store", "elasticsearch"), []string{"/coordinator/audit/elasticsearch", "addresses"}},
		{"unknown store", set("coordinator.audit.store", "s3"), []string{"/coordinator/audit/store"}},
		{"misspelt top-level key", set("ectd", map[string]any{"endpoints": []any{"http://etcd:2379"}}), []string{"ectd"}},
		{"misspelt service key", set("haagent.config.poll_intervall", "1s"), []string{"/haagent/config", "poll_intervall"}},
		{"bad duration", set("collector.config.ack_wait", "10 seconds"), []string{"/collector/config/ack_wait"}},
		{"reship start", set("reship.config.start", "latest"), []string{"/reship/config/start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := exampleValues(t, "dc-a1", tc.edit)
			_, err := charttest.Render(charttest.ChartDir, vals, charttest.RenderOptions{})
			require.Error(t, err)
			assert.ErrorIs(t, err, charttest.ErrRender)
			assert.Contains(t, err.Error(), schemaError)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestTemplateRejects covers the checks the schema cannot express: they
// fail the render with a message naming the value.
func TestTemplateRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []func(map[string]any)
		want  string
	}{
		{"domain differs from dc", []func(map[string]any){set("nats.jetstreamDomain", "a1")}, `nats.jetstreamDomain: "a1" differs from dc "dc-a1"`},
		{"peer is the dc", []func(map[string]any){set("nats.peers", []any{map[string]any{"dc": "dc-a1"}})}, `nats.peers: "dc-a1" is this release's own dc`},
		{"peer twice", []func(map[string]any){set("nats.peers", []any{map[string]any{"dc": "dc-b1"}, map[string]any{"dc": "dc-b1"}})}, `nats.peers: "dc-b1" is listed twice`},
		{"two coordinators on one volume", []func(map[string]any){set("coordinator.replicas", 2)}, "coordinator.replicas: the embedded audit store on a persistent volume allows 1 replica"},
		{"es password without user", []func(map[string]any){
			set("coordinator.audit.store", "elasticsearch"),
			set("coordinator.audit.elasticsearch.addresses", []any{"https://es:9200"}),
			set("coordinator.audit.elasticsearch.existingSecret", "es"),
			set("coordinator.audit.elasticsearch.passwordKey", "password"),
		}, "coordinator.audit.elasticsearch.username: required with passwordKey"},
		{"es key without secret", []func(map[string]any){
			set("coordinator.audit.store", "elasticsearch"),
			set("coordinator.audit.elasticsearch.addresses", []any{"https://es:9200"}),
			set("coordinator.audit.elasticsearch.apiKeyKey", "key"),
		}, "coordinator.audit.elasticsearch.existingSecret is required with apiKeyKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := charttest.Render(charttest.ChartDir, exampleValues(t, "dc-a1", tc.edits...), charttest.RenderOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// The domain may be spelt out when it is the DC's name.
	r := renderExample(t, "dc-a1", set("nats.jetstreamDomain", "dc-a1"))
	assert.NotEmpty(t, r.objects)
}

// TestHaagentReplicasDefault: the chart's default runs a standby agent.
func TestHaagentReplicasDefault(t *testing.T) {
	ch, err := loader.Load(charttest.ChartDir)
	require.NoError(t, err)
	ha, ok := ch.Values["haagent"].(map[string]any)
	require.True(t, ok)
	replicas, ok := ha["replicas"].(float64)
	require.True(t, ok, "haagent.replicas is a number: %v", ha["replicas"])
	assert.GreaterOrEqual(t, replicas, 2.0)

	r := render(t, "dc-x", minimalValues())
	assert.GreaterOrEqual(t, *r.deployment(t, "haagent").Spec.Replicas, int32(2))
}
