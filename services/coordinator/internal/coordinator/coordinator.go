// Package coordinator wires the coordinator service: configuration, the
// control API server and its dependencies.
package coordinator

import (
	"context"
	"net"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/mtls"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/server"
)

// Config is the coordinator's configuration.
type Config struct {
	daemon.Common `yaml:",inline"`
	API           API `yaml:"api"`
	Auth          struct {
		Tokens []auth.Token `yaml:"tokens"`
	} `yaml:"auth"`
}

// API is where the control API listens.
type API struct {
	GRPCAddr string       `yaml:"grpc_addr"`
	HTTPAddr string       `yaml:"http_addr"`
	TLS      mtls.Options `yaml:"tls,omitempty"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{Common: daemon.DefaultCommon(), API: API{GRPCAddr: "127.0.0.1:7700", HTTPAddr: "127.0.0.1:7701"}}
}

// Validate checks the configuration, naming the field.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.API.GRPCAddr); err != nil {
		return config.Invalid("api.grpc_addr", "%q is not host:port", c.API.GRPCAddr)
	}
	_, httpPort, err := net.SplitHostPort(c.API.HTTPAddr)
	if err != nil {
		return config.Invalid("api.http_addr", "%q is not host:port", c.API.HTTPAddr)
	}
	// Port 0 picks a free port for each listener, so both may ask for it.
	if c.API.GRPCAddr == c.API.HTTPAddr && httpPort != "0" {
		return config.Invalid("api.http_addr", "same address as api.grpc_addr (%s)", c.API.HTTPAddr)
	}
	if c.API.TLS.Enabled() && c.API.TLS.CertFile == "" {
		return config.Invalid("api.tls.cert_file", "a server needs cert_file and key_file")
	}
	if err := c.API.TLS.Validate("api.tls"); err != nil {
		return config.Invalid("api.tls", "%v", err)
	}
	if len(c.Auth.Tokens) == 0 {
		return config.Invalid("auth.tokens", "at least one token is required (every API call needs one)")
	}
	if _, err := auth.New(c.Auth.Tokens, nil); err != nil {
		return err
	}
	return nil
}

// Flags binds the coordinator's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.API.GRPCAddr, "grpc-addr", c.API.GRPCAddr, "gRPC listen address of the control API")
	fs.StringVar(&c.API.HTTPAddr, "http-addr", c.API.HTTPAddr, "REST (grpc-gateway) listen address of the control API")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "coordinator",
		Short: "drplane control API and shard-routing brain",
		Long: `STATUS: serves TopologyService (GetTopology, GetStatus) and FailoverService
(Switchover, ListFailovers, kill switches) over gRPC and REST (grpc-gateway,
/openapi.json), reading and writing etcd, with bearer-token roles; mutating
calls are audited into the etcd outbox. Shard routing, leader election,
evacuation, city failover and indexing the audit outbox are NOT implemented
yet.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: false,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
	}
}

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	authn, err := auth.New(cfg.Auth.Tokens, server.Policy())
	if err != nil {
		return err
	}
	tlsCfg, err := cfg.API.TLS.Server()
	if err != nil {
		return err
	}
	failover := control.NewFailover(control.FailoverOptions{Store: env.State, Source: env.Record.ID, Logger: env.Logger})
	srv := server.New(server.Options{
		GRPCAddr: cfg.API.GRPCAddr, HTTPAddr: cfg.API.HTTPAddr, TLS: tlsCfg, Auth: authn,
		Topology: &control.Topology{Store: env.State}, Failover: failover,
		PreAuth: []grpc.UnaryServerInterceptor{failover.AuditDenied(authn)}, Logger: env.Logger,
	})
	if err := srv.Listen(); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}
