package bus

import (
	"context"

	"github.com/nats-io/nats.go"
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
	NATSURL string `yaml:"nats_url"`
	// NATS is how to authenticate to it and secure the connection.
	NATS  Auth              `yaml:"nats,omitempty"`
	MySQL masterdb.Endpoint `yaml:"mysql"`
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
	if err := c.NATS.Validate("nats"); err != nil {
		return err
	}
	return c.MySQL.Validate("mysql")
}

// Flags binds the shared flags; clusterHelp describes --cluster.
func (c *ServiceConfig) Flags(fs *pflag.FlagSet, clusterHelp string) {
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS URL of this DC")
	fs.StringVar(&c.MySQL.Cluster, "cluster", c.MySQL.Cluster, clusterHelp)
}

// Endpoints are a service's live connections: its DC's NATS and a handle
// that follows the DC's current master.
type Endpoints struct {
	NATS   *nats.Conn
	Master *masterdb.Resolver
}

// Connect dials the DC's NATS as client name and prepares the master
// resolver, registering both as readiness checks. The caller runs
// Endpoints.Master (it follows the master record until ctx ends) and closes
// Endpoints.NATS.
func (c *ServiceConfig) Connect(ctx context.Context, name string, env *daemon.Env) (Endpoints, error) {
	opts, err := c.NATS.Options()
	if err != nil {
		return Endpoints{}, err
	}
	nc, err := Connect(ctx, c.NATSURL, name+"-"+c.DC, env.Logger, opts...)
	if err != nil {
		return Endpoints{}, err
	}
	env.Health.AddReadiness("nats", Check(nc))
	master := c.MySQL.Resolver(env.State, c.DC, env.Logger)
	env.Health.AddReadiness("mysql-master", master.Check)
	return Endpoints{NATS: nc, Master: master}, nil
}
