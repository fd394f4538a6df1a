// Package reship captures committed writes from the DC's current master and
// ships them to the DC's outbound JetStream stream. In this release only its
// skeleton runs: it connects to etcd, NATS and the current master, registers
// itself and reports health; binlog capture is not implemented yet.
package reship

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/daemon"
)

// Config is reship's configuration.
type Config struct {
	bus.ServiceConfig `yaml:",inline"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{ServiceConfig: bus.DefaultServiceConfig()}
}

// Flags binds reship's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	c.ServiceConfig.Flags(fs, "MySQL cluster whose master is captured")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "reship",
		Short: "capture committed writes from the DC's master and ship them to NATS JetStream",
		Long: `STATUS: skeleton. reship connects to etcd, to the DC's NATS and to the current
master of its cluster (following the master record in etcd), registers itself
and serves /healthz, /readyz and /metrics. Binlog capture and publishing are
NOT implemented yet: it ships nothing.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: false,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
	}
}

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	ep, err := cfg.Connect(ctx, "reship", env)
	if err != nil {
		return err
	}
	defer ep.NATS.Close()
	env.Logger.Warn().Msg("binlog capture is not implemented yet: this reship ships nothing")
	return ep.Master.Run(ctx)
}
