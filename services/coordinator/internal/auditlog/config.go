package auditlog

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/docstore/es"
)

// Store kinds of Config.Store.
const (
	StoreEmbedded      = "embedded"
	StoreElasticsearch = "elasticsearch"
)

// Defaults of Config.
const (
	DefaultIndex           = "drplane-audit"
	DefaultOutboxRetention = 24 * time.Hour
)

// metaSuffix names the checkpoint index: <index>-meta.
const metaSuffix = "-meta"

// Config is the coordinator's audit section.
type Config struct {
	// Store is "embedded" (a bleve index in Dir) or "elasticsearch".
	Store string `yaml:"store"`
	// Dir holds the embedded store's data; required for the embedded store.
	Dir           string        `yaml:"dir,omitempty"`
	Elasticsearch Elasticsearch `yaml:"elasticsearch,omitempty"`
	// Index is the audit index name; the checkpoints go to <index>-meta.
	Index string `yaml:"index"`
	// OutboxRetention is how long events stay in the etcd outbox after they
	// were written; indexers delete older ones.
	OutboxRetention time.Duration `yaml:"outbox_retention"`
}

// Elasticsearch says how to reach an Elasticsearch 8 cluster.
type Elasticsearch struct {
	// Addresses are node URLs such as https://es-1:9200.
	Addresses []string `yaml:"addresses,omitempty"`
	// Username and Password authenticate with HTTP basic auth.
	Username string        `yaml:"username,omitempty"`
	Password config.Secret `yaml:"password,omitempty"`
	// APIKey (base64 "id:key") authenticates instead of a password.
	APIKey config.Secret `yaml:"api_key,omitempty"`
	// CAFile is a PEM bundle of the authorities that sign the nodes'
	// certificates; empty uses the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
}

// DefaultConfig returns the defaults: the embedded store (Dir still to be
// set), index drplane-audit, 24h outbox retention.
func DefaultConfig() Config {
	return Config{Store: StoreEmbedded, Index: DefaultIndex, OutboxRetention: DefaultOutboxRetention}
}

// MetaIndex is the name of the checkpoint index.
func (c Config) MetaIndex() string { return c.Index + metaSuffix }

// Validate checks the section; field names errors under prefix (the
// section's YAML path, "audit").
func (c Config) Validate(prefix string) error {
	f := func(name string) string { return prefix + "." + name }
	switch c.Store {
	case StoreEmbedded:
		if c.Dir == "" {
			return config.Invalid(f("dir"), "required for the embedded store (its data directory)")
		}
	case StoreElasticsearch:
		if err := c.Elasticsearch.validate(f("elasticsearch")); err != nil {
			return err
		}
	default:
		return config.Invalid(f("store"), "%q is not %s or %s", c.Store, StoreEmbedded, StoreElasticsearch)
	}
	if err := docstore.ValidateIndexName(c.Index); err != nil {
		return config.Invalid(f("index"), "%v", err)
	}
	if err := docstore.ValidateIndexName(c.MetaIndex()); err != nil {
		return config.Invalid(f("index"), "%v", err)
	}
	if c.OutboxRetention < time.Minute {
		return config.Invalid(f("outbox_retention"), "must be at least 1m, got %s", c.OutboxRetention)
	}
	return nil
}

func (e Elasticsearch) validate(prefix string) error {
	f := func(name string) string { return prefix + "." + name }
	if len(e.Addresses) == 0 {
		return config.Invalid(f("addresses"), "at least one node URL is required for the elasticsearch store")
	}
	for i, a := range e.Addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Invalid(fmt.Sprintf("%s[%d]", f("addresses"), i), "%q is not an http(s)://host:port URL", a)
		}
	}
	switch {
	case e.Password != "" && e.Username == "":
		return config.Invalid(f("username"), "required with a password")
	case e.APIKey != "" && e.Username != "":
		return config.Invalid(f("api_key"), "use either api_key or username and password, not both")
	}
	if e.CAFile != "" {
		if _, err := os.Stat(e.CAFile); err != nil {
			return config.Invalid(f("ca_file"), "%v", err)
		}
	}
	return nil
}

// Open returns the configured store. It does not contact Elasticsearch.
func (c Config) Open(log zerolog.Logger) (docstore.Store, error) {
	switch c.Store {
	case StoreEmbedded:
		return embedded.Open(embedded.Options{Dir: c.Dir, Logger: log})
	case StoreElasticsearch:
		o := es.Options{
			Addresses: c.Elasticsearch.Addresses, Username: c.Elasticsearch.Username,
			Password: c.Elasticsearch.Password.Reveal(), APIKey: c.Elasticsearch.APIKey.Reveal(), Logger: log,
		}
		if c.Elasticsearch.CAFile != "" {
			pem, err := os.ReadFile(c.Elasticsearch.CAFile)
			if err != nil {
				return nil, fmt.Errorf("auditlog: read audit.elasticsearch.ca_file: %w", err)
			}
			o.CACert = pem
		}
		return es.New(o)
	}
	return nil, config.Invalid("audit.store", "%q is not %s or %s", c.Store, StoreEmbedded, StoreElasticsearch)
}
