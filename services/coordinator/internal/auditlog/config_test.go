package auditlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/docstore/es"
)

func TestConfigValidate(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, []byte("x"), 0o600))
	embeddedCfg := func() Config { c := DefaultConfig(); c.Dir = "/var/lib/drplane/audit"; return c }
	esCfg := func() Config {
		c := DefaultConfig()
		c.Store = StoreElasticsearch
		c.Elasticsearch.Addresses = []string{"https://es-1:9200"}
		return c
	}
	tests := []struct {
		name  string
		cfg   func() Config
		field string // empty: valid
		msg   string
	}{
		{name: "embedded with a dir", cfg: embeddedCfg},
		{name: "elasticsearch", cfg: esCfg},
		{name: "elasticsearch with basic auth and a CA", cfg: func() Config {
			c := esCfg()
			c.Elasticsearch.Username, c.Elasticsearch.Password, c.Elasticsearch.CAFile = "drplane", "pw", caFile
			return c
		}},
		{name: "elasticsearch with an API key", cfg: func() Config { c := esCfg(); c.Elasticsearch.APIKey = "a2V5"; return c }},
		{name: "embedded needs a dir", field: "audit.dir", msg: "required", cfg: DefaultConfig},
		{name: "unknown store", field: "audit.store", msg: `"opensearch" is not`,
			cfg: func() Config { c := embeddedCfg(); c.Store = "opensearch"; return c }},
		{name: "elasticsearch needs addresses", field: "audit.elasticsearch.addresses", msg: "at least one",
			cfg: func() Config { c := esCfg(); c.Elasticsearch.Addresses = nil; return c }},
		{name: "address not a URL", field: "audit.elasticsearch.addresses[1]", msg: "not an http(s)",
			cfg: func() Config {
				c := esCfg()
				c.Elasticsearch.Addresses = append(c.Elasticsearch.Addresses, "es-2:9200")
				return c
			}},
		{name: "password without user", field: "audit.elasticsearch.username", msg: "required with a password",
			cfg: func() Config { c := esCfg(); c.Elasticsearch.Password = "pw"; return c }},
		{name: "api key and user", field: "audit.elasticsearch.api_key", msg: "not both",
			cfg: func() Config {
				c := esCfg()
				c.Elasticsearch.APIKey, c.Elasticsearch.Username = "k", "u"
				return c
			}},
		{name: "missing CA file", field: "audit.elasticsearch.ca_file", msg: "no such file",
			cfg: func() Config { c := esCfg(); c.Elasticsearch.CAFile = caFile + ".missing"; return c }},
		{name: "index name", field: "audit.index", msg: "not lowercase",
			cfg: func() Config { c := embeddedCfg(); c.Index = "Audit"; return c }},
		{name: "retention too short", field: "audit.outbox_retention", msg: "at least 1m",
			cfg: func() Config { c := embeddedCfg(); c.OutboxRetention = time.Second; return c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg().Validate("audit")
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, ce.Msg, tt.msg)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	assert.Equal(t, StoreEmbedded, c.Store)
	assert.Equal(t, "drplane-audit", c.Index)
	assert.Equal(t, "drplane-audit-meta", c.MetaIndex())
	assert.Equal(t, 24*time.Hour, c.OutboxRetention)
}

func TestConfigOpen(t *testing.T) {
	c := DefaultConfig()
	c.Dir = t.TempDir()
	s, err := c.Open(zerolog.Nop())
	require.NoError(t, err)
	assert.IsType(t, &embedded.Store{}, s)
	require.NoError(t, s.Close())

	c.Store = StoreElasticsearch
	c.Elasticsearch.Addresses = []string{"http://127.0.0.1:9"}
	c.Elasticsearch.Username, c.Elasticsearch.Password = "u", "p"
	s, err = c.Open(zerolog.Nop())
	require.NoError(t, err, "Open does not contact the cluster")
	assert.IsType(t, &es.Store{}, s)
	require.NoError(t, s.Close())

	c.Elasticsearch.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	_, err = c.Open(zerolog.Nop())
	require.ErrorContains(t, err, "audit.elasticsearch.ca_file")
}
