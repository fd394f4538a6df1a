// Package collector applies the changes other DCs shipped to this DC's
// inbound JetStream stream to the DC's current master, exactly once. In this
// release only its skeleton runs: it connects to etcd, NATS and the current
// master, registers itself and reports health; applying is not implemented yet.
package collector

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/daemon"
)

// Config is collector's configuration.
type Config struct {
	bus.ServiceConfig `yaml:",inline"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{ServiceConfig: bus.DefaultServiceConfig()}
}

// Flags binds collector's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	c.ServiceConfig.Flags(fs, "MySQL cluster whose master receives the changes")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "collector",
		Short: "apply other DCs' changes from NATS JetStream to the DC's master, exactly once",
		Long: `STATUS: skeleton. collector connects to etcd, to the DC's NATS and to the
current master of its cluster (following the master record in etcd), registers
itself and serves /healthz, /readyz and /metrics. Consuming and applying remote
changes are NOT implemented yet: it applies nothing.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: false,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
	}
}

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	ep, err := cfg.Connect(ctx, "collector", env)
	if err != nil {
		return err
	}
	defer ep.NATS.Close()
	env.Logger.Warn().Msg("applying remote changes is not implemented yet: this collector applies nothing")
	return ep.Master.Run(ctx)
}
