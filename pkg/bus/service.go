package bus

import (
	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/masterdb"
)

// ServiceConfig is the configuration shared by the services that move
// changes between a DC's MySQL master and its NATS (reship, collector).
type ServiceConfig struct {
	daemon.Common `yaml:",inline"`
	// NATSURL is the DC's NATS server.
	NATSURL string            `yaml:"nats_url"`
	MySQL   masterdb.Endpoint `yaml:"mysql"`
}

// DefaultServiceConfig returns the defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Common: daemon.DefaultCommon(), MySQL: masterdb.Endpoint{Cluster: "main"}}
}

// Validate checks the configuration, naming the field.
func (c *ServiceConfig) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.NATSURL == "" {
		return config.Invalid("nats_url", "required (--nats)")
	}
	return c.MySQL.Validate("mysql")
}

// Flags binds the shared flags; clusterHelp describes --cluster.
func (c *ServiceConfig) Flags(fs *pflag.FlagSet, clusterHelp string) {
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS URL of this DC")
	fs.StringVar(&c.MySQL.Cluster, "cluster", c.MySQL.Cluster, clusterHelp)
}
