package charttest_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// keySet is one block of testdata/config-keys.yaml.
type keySet struct {
	Known    []string `json:"known"`
	Rendered []string `json:"rendered"`
	Secret   []string `json:"secret"`
	Never    []string `json:"never"`
}

// serviceKeys are the expected keys of one service (common keys included).
type serviceKeys struct {
	known, rendered, secret, never []string
}

func loadKeys(t *testing.T) map[string]serviceKeys {
	t.Helper()
	data, err := os.ReadFile("testdata/config-keys.yaml")
	require.NoError(t, err)
	var doc struct {
		Common   keySet            `json:"common"`
		Services map[string]keySet `json:"services"`
	}
	require.NoError(t, yaml.UnmarshalStrict(data, &doc))
	out := map[string]serviceKeys{}
	for name, s := range doc.Services {
		out[name] = serviceKeys{
			known:    slices.Concat(doc.Common.Known, s.Known),
			rendered: slices.Concat(doc.Common.Rendered, s.Rendered),
			secret:   slices.Concat(doc.Common.Secret, s.Secret),
			never:    slices.Concat(doc.Common.Never, s.Never),
		}
	}
	require.ElementsMatch(t, components(), mapKeys(out))
	return out
}

func mapKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// envName is a key's environment variable: DRPLANE_ + the path upper-cased.
func envName(key string) string {
	return "DRPLANE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// TestServiceConfigKeys checks every rendered configuration file against
// the keys of the service's configuration struct: each file parses as
// YAML, holds every key the chart must write, no key the service would
// refuse, and no secret; each DRPLANE_* variable names a real key.
func TestServiceConfigKeys(t *testing.T) {
	keys := loadKeys(t)
	for _, dc := range exampleDCs() {
		t.Run(dc, func(t *testing.T) {
			r := renderExample(t, dc)
			for _, comp := range components() {
				want := keys[comp]
				cfg := r.config(t, comp)
				got := keyPaths(cfg)
				for _, k := range want.rendered {
					assert.Contains(t, got, k, "%s %s: missing key", dc, comp)
				}
				for _, k := range got {
					assert.Contains(t, want.known, k, "%s %s: the service does not know key %q", dc, comp, k)
					assert.NotContains(t, want.secret, k, "%s %s: secret key %q written to the file", dc, comp, k)
					assert.NotContains(t, want.never, k, "%s %s: key %q", dc, comp, k)
				}

				// Values that tie the release together.
				assert.Equal(t, dc, cfg["dc"], comp)
				etcd := r.vals["etcd"].(map[string]any)
				assert.Equal(t, etcd["endpoints"], mustLookup(t, cfg, "etcd.endpoints"), comp)
				if slices.Contains(want.known, "nats_url") {
					assert.Equal(t, "nats://nats.nats-"+dc+".svc:4222", cfg["nats_url"], comp)
				}

				// Every DRPLANE_* variable is a key of the service; a secret
				// one comes from a Secret, never a literal.
				for _, e := range r.container(t, comp).Env {
					if !strings.HasPrefix(e.Name, "DRPLANE_") {
						continue
					}
					var key string
					for _, k := range want.known {
						if envName(k) == e.Name {
							key = k
						}
					}
					require.NotEmpty(t, key, "%s %s: %s is no configuration key", dc, comp, e.Name)
					if slices.Contains(want.secret, key) {
						assert.Empty(t, e.Value, "%s %s: %s is a literal", dc, comp, e.Name)
						require.NotNil(t, e.ValueFrom, e.Name)
						require.NotNil(t, e.ValueFrom.SecretKeyRef, e.Name)
						assert.NotEmpty(t, e.ValueFrom.SecretKeyRef.Name, e.Name)
					}
				}
			}
		})
	}
}

// TestAccountPasswordsFromSecrets: each service's MySQL password (and the
// agent's replication password) is read from the Secret the values name.
func TestAccountPasswordsFromSecrets(t *testing.T) {
	r := renderExample(t, "dc-a1")
	assert.Contains(t, r.container(t, "haagent").Env, secretEnv("DRPLANE_MYSQL_PASSWORD", "drplane-mysql-agent", "password"))
	assert.Contains(t, r.container(t, "haagent").Env, secretEnv("DRPLANE_MYSQL_REPL_PASSWORD", "drplane-mysql-agent", "repl-password"))
	assert.Contains(t, r.container(t, "reship").Env, secretEnv("DRPLANE_MYSQL_PASSWORD", "drplane-mysql-reship", "password"))
	assert.Contains(t, r.container(t, "collector").Env, secretEnv("DRPLANE_MYSQL_PASSWORD", "drplane-mysql-app", "password"))
	assert.Equal(t, "drplane_agent", mustLookup(t, r.config(t, "haagent"), "mysql.user"))
	assert.Equal(t, "repl", mustLookup(t, r.config(t, "haagent"), "mysql.repl_user"))

	es := renderExample(t, "dc-b1")
	co := es.container(t, "coordinator")
	assert.Contains(t, co.Env, secretEnv("DRPLANE_AUDIT_ELASTICSEARCH_API_KEY", "drplane-es", "api-key"))
	for _, e := range co.Env {
		assert.NotEqual(t, "DRPLANE_AUDIT_ELASTICSEARCH_PASSWORD", e.Name, "no passwordKey in the example")
	}
	cfg := es.config(t, "coordinator")
	assert.Equal(t, "elasticsearch", mustLookup(t, cfg, "audit.store"))
	assert.Equal(t, []any{"https://es.dc-b1.example.com:9200"}, mustLookup(t, cfg, "audit.elasticsearch.addresses"))
	assert.Equal(t, "/etc/drplane/es-ca/ca.crt", mustLookup(t, cfg, "audit.elasticsearch.ca_file"))
	assert.Equal(t, "drplane-es-ca", volume(t, es.deployment(t, "coordinator"), "es-ca").Secret.SecretName)
	_, dir := lookup(cfg, "audit.dir")
	assert.False(t, dir, "no audit.dir with elasticsearch")
}

// TestConfigPassThrough: a service's config values reach its file as the
// service names them.
func TestConfigPassThrough(t *testing.T) {
	r := renderExample(t, "dc-a1",
		set("haagent.config.election.ttl", "8s"),
		set("reship.config.outbound.max_bytes", 10737418240),
		set("collector.config.batch_size", 1000),
		set("coordinator.config.ledger.retry_after", "1m"),
		set("log.level", "debug"),
	)
	assert.Equal(t, "8s", mustLookup(t, r.config(t, "haagent"), "election.ttl"))
	text, _ := r.configText(t, "reship")
	assert.Contains(t, text, "max_bytes: 10737418240", "large integers stay integers")
	assert.EqualValues(t, 1000, mustLookup(t, r.config(t, "collector"), "batch_size"))
	assert.Equal(t, "1m", mustLookup(t, r.config(t, "coordinator"), "ledger.retry_after"))
	for _, comp := range components() {
		assert.Equal(t, "debug", mustLookup(t, r.config(t, comp), "log.level"))
	}
}
