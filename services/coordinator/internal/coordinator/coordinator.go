// Package coordinator wires the coordinator service: configuration, the
// control API server and its dependencies — the leader election, the
// operations queue and the routing cache.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/mtls"
	"github.com/drplane/drplane/services/coordinator/internal/auditlog"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/guard"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
)

// Config is the coordinator's configuration.
type Config struct {
	daemon.Common `yaml:",inline"`
	API           API `yaml:"api"`
	Auth          struct {
		Tokens []auth.Token `yaml:"tokens"`
	} `yaml:"auth"`
	Leader Leader `yaml:"leader"`
	Ops    Ops    `yaml:"ops"`
	// Handoff bounds the waits of safe shard handoffs (evacuations,
	// restores, drctl shards move).
	Handoff Handoff `yaml:"handoff"`
	// Audit is where the audit log is indexed and searched.
	Audit auditlog.Config `yaml:"audit"`
	// NATSURL is this DC's NATS server. Optional: without it the request
	// ledger, its reconciler and the dead-letter calls are off (they answer
	// UNAVAILABLE).
	NATSURL string `yaml:"nats_url,omitempty"`
	// NATS is how to authenticate to it and secure the connection.
	NATS bus.Auth `yaml:"nats,omitempty"`
	// Ledger configures the request ledger (in the audit store).
	Ledger ledger.Config `yaml:"ledger"`
	// CityFailover is the policy of automatic city failovers.
	CityFailover CityFailover `yaml:"city_failover"`
}

// CityFailover is the global policy of automatic city failovers.
type CityFailover struct {
	// Auto is the global auto_city_failover: whether a DC the leader
	// declares LOST is failed over without an operator (a keyspace's
	// auto_city_failover in the topology overrides it). Default on.
	Auto bool `yaml:"auto"`
}

// Leader configures the coordinator leader election.
type Leader struct {
	// SessionTTL is the election session's TTL: how long the leadership of
	// a coordinator that died without resigning lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// Ops configures the operations queue.
type Ops struct {
	// WaitTimeout is how long a mutating call waits for the leader to apply
	// its operation before answering UNAVAILABLE (the operation stays
	// queued).
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// Retention is how long finished operations are kept as history.
	Retention time.Duration `yaml:"retention"`
}

// Handoff bounds the waits of one handoff wave.
type Handoff struct {
	// RouterGrace is how long a wave waits for every connected router to
	// acknowledge the freeze before it goes on without the silent ones.
	RouterGrace time.Duration `yaml:"router_grace"`
	// CatchUp is how long a wave waits for the old owner's barrier and for
	// every live DC to apply up to it before it is aborted (the shards
	// unfrozen at their old owner).
	CatchUp time.Duration `yaml:"catch_up"`
}

// API is where the control API listens.
type API struct {
	GRPCAddr string       `yaml:"grpc_addr"`
	HTTPAddr string       `yaml:"http_addr"`
	TLS      mtls.Options `yaml:"tls,omitempty"`
	// TrustedProxies are the addresses or CIDR prefixes of the proxies in
	// front of the API whose X-Forwarded-For is believed (for audited
	// peers and per-caller limits). Empty: the TCP peer is the caller.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// Limits bound what one caller can cost.
	Limits Limits `yaml:"limits"`
}

// Limits bound the API per caller (a token, else an address).
type Limits struct {
	// RefusedRate (per second) and RefusedBurst bound the refused calls
	// (unauthenticated, permission denied) of one caller; beyond them
	// every call of that caller is answered RESOURCE_EXHAUSTED until the
	// bucket refills.
	RefusedRate  float64 `yaml:"refused_rate"`
	RefusedBurst int     `yaml:"refused_burst"`
	// MaxWatches bounds the open WatchRoutes and WatchOperation streams
	// and dashboard event streams (/ui/api/events) of one caller.
	MaxWatches int `yaml:"max_watches"`
	// RefusalWindow is how long the repeated refusals of one caller are
	// gathered into one audit event (count, first and last seen).
	RefusalWindow time.Duration `yaml:"refusal_window"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Common: daemon.DefaultCommon(),
		API: API{GRPCAddr: "127.0.0.1:7700", HTTPAddr: "127.0.0.1:7701", Limits: Limits{
			RefusedRate: guard.DefaultRefusedRate, RefusedBurst: guard.DefaultRefusedBurst,
			MaxWatches: guard.DefaultMaxWatches, RefusalWindow: auditlog.DefaultRefusalWindow,
		}},
		Leader:       Leader{SessionTTL: 5 * time.Second},
		Ops:          Ops{WaitTimeout: 10 * time.Second, Retention: 24 * time.Hour},
		Handoff:      Handoff{RouterGrace: handoff.DefaultRouterGrace, CatchUp: handoff.DefaultCatchUp},
		Audit:        auditlog.DefaultConfig(),
		Ledger:       ledger.DefaultConfig(),
		CityFailover: CityFailover{Auto: true},
	}
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
	if _, err := guard.ParseProxies(c.API.TrustedProxies); err != nil {
		return config.Invalid("api.trusted_proxies", "%v", err)
	}
	if l := c.API.Limits; l.RefusedRate <= 0 || l.RefusedRate > 1000 {
		return config.Invalid("api.limits.refused_rate", "must be in (0, 1000], got %v", l.RefusedRate)
	}
	if l := c.API.Limits; l.RefusedBurst < 1 || l.RefusedBurst > 10000 {
		return config.Invalid("api.limits.refused_burst", "must be between 1 and 10000, got %d", l.RefusedBurst)
	}
	if l := c.API.Limits; l.MaxWatches < 1 || l.MaxWatches > 10000 {
		return config.Invalid("api.limits.max_watches", "must be between 1 and 10000, got %d", l.MaxWatches)
	}
	if l := c.API.Limits; l.RefusalWindow < time.Second || l.RefusalWindow > time.Hour {
		return config.Invalid("api.limits.refusal_window", "must be between 1s and 1h, got %s", l.RefusalWindow)
	}
	if len(c.Auth.Tokens) == 0 {
		return config.Invalid("auth.tokens", "at least one token is required (every API call needs one)")
	}
	if _, err := auth.New(c.Auth.Tokens, nil); err != nil {
		return err
	}
	if c.Leader.SessionTTL < 2*time.Second {
		return config.Invalid("leader.session_ttl", "must be at least 2s, got %s", c.Leader.SessionTTL)
	}
	if c.Ops.WaitTimeout <= 0 || c.Ops.WaitTimeout > 5*time.Minute {
		return config.Invalid("ops.wait_timeout", "must be between 1ms and 5m, got %s", c.Ops.WaitTimeout)
	}
	if c.Ops.Retention < time.Minute {
		return config.Invalid("ops.retention", "must be at least 1m, got %s", c.Ops.Retention)
	}
	if c.Handoff.RouterGrace <= 0 || c.Handoff.RouterGrace > time.Minute {
		return config.Invalid("handoff.router_grace", "must be between 1ms and 1m, got %s", c.Handoff.RouterGrace)
	}
	if c.Handoff.CatchUp < 100*time.Millisecond || c.Handoff.CatchUp > 10*time.Minute {
		return config.Invalid("handoff.catch_up", "must be between 100ms and 10m, got %s", c.Handoff.CatchUp)
	}
	if err := c.Audit.Validate("audit"); err != nil {
		return err
	}
	if c.NATSURL != "" {
		if u, err := url.Parse(c.NATSURL); err != nil || u.Scheme == "" || u.Host == "" {
			return config.Invalid("nats_url", "%q is not a nats://host:port URL", bus.Redact(c.NATSURL))
		}
	}
	if err := c.NATS.Validate("nats"); err != nil {
		return err
	}
	if err := c.Ledger.Validate("ledger"); err != nil {
		return err
	}
	if c.Ledger.Index == c.Audit.Index || c.Ledger.Index == c.Audit.MetaIndex() {
		return config.Invalid("ledger.index", "%q is the audit index's name", c.Ledger.Index)
	}
	return nil
}

// Flags binds the coordinator's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.API.GRPCAddr, "grpc-addr", c.API.GRPCAddr, "gRPC listen address of the control API")
	fs.StringVar(&c.API.HTTPAddr, "http-addr", c.API.HTTPAddr, "REST (grpc-gateway) listen address of the control API")
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS URL of this DC (turns the request ledger and dead-letter calls on)")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "coordinator",
		Short: "drplane control API and shard-routing brain",
		Long: `STATUS: serves over gRPC and REST (grpc-gateway, /openapi.json), with
bearer-token roles:
  - ShardService: routing (Route, BatchRoute, WatchRoutes, ListShards,
    GetShard) from an in-memory cache every coordinator keeps current with
    etcd watches; mutations (MoveShard, SetShardState, SetDCState) queued in
    etcd and applied by the one leader coordinator;
  - TopologyService (GetTopology, GetStatus);
  - FailoverService (Switchover through the DC's HA agent, ListFailovers,
    kill switches, which are changed through the same queue).
One coordinator is the leader (etcd election, session leader.session_ttl);
it applies queued operations oldest first, each in one transaction fenced by
its election revision, so an operation is applied at most once and a new
leader finishes what the old one left queued. Mutating calls, and calls
refused as unauthenticated (rate-limited), are audited into the etcd outbox;
every coordinator indexes the outbox into its audit store (audit.store:
embedded or elasticsearch) and serves AuditService.SearchAudit from it.
ReplicationService reports every DC pair's replication from the
collectors' statistics in etcd; with nats_url set, the coordinator also
indexes every DC's ledger stream into its request ledger (index
ledger.index in the audit store; "where is request X?"), retries the
requests captured in its own DC that stay unapplied for ledger.retry_after
(asking its DC's reship to republish them; audited as replication.retry),
and lists and retries any DC's dead letters. Without nats_url those calls
answer UNAVAILABLE.
EvacuationService evacuates a DC (every shard it owns handed to its
backup or a chosen DC through the safe handoff: freeze, router
acknowledgements within handoff.router_grace, the old owner's barrier,
every live DC caught up within handoff.catch_up, one fenced flip), and
restores one (ACTIVE again; with move_home its home shards handed back),
as crash-safe operations in etcd that the leader runs in waves and a new
leader resumes; cancel stops after the current wave.
City failover: every coordinator writes its DC's view of the others; the
leader assesses every DC (its lease, the others' views) and, when one is
declared LOST, stores a city failover at /operations/<id> and runs it:
every shard the DC owns flipped to its backup in fenced transactions, with
the estimated loss (the ledger's captured-not-applied request ids) on the
record and in the audit log; kill switches, city_failover.auto (and each
keyspace's auto_city_failover) and the keyspaces' max_rpo hold it for an
operator. A new leader resumes an interrupted one.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: true,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
	}
}

// errStarting is the readiness error until the API listens.
var errStarting = errors.New("coordinator: starting")

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	// Not ready before the API listens and the routing cache loaded.
	var node atomic.Pointer[Node]
	env.Health.AddReadiness("routes", func(context.Context) error {
		n := node.Load()
		if n == nil {
			return errStarting
		}
		return n.CacheReady()
	})
	tlsCfg, err := cfg.API.TLS.Server()
	if err != nil {
		return err
	}
	docs, err := cfg.Audit.Open(env.Logger.With().Str("component", "auditstore").Logger())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := docs.Close(); cerr != nil {
			env.Logger.Warn().Err(cerr).Msg("closing the audit store")
		}
	}()
	var nc *nats.Conn
	if cfg.NATSURL != "" {
		auth, err := cfg.NATS.Options()
		if err != nil {
			return err
		}
		if nc, err = connectNATS(cfg.NATSURL, "coordinator-"+cfg.DC, env.Logger, auth...); err != nil {
			return err
		}
		defer nc.Close()
	} else {
		env.Logger.Warn().Msg("no nats_url: the request ledger, its reconciler and the dead-letter calls are off")
	}
	n, err := NewNode(NodeOptions{
		Store: env.State, ID: env.Record.ID, GRPCAddr: cfg.API.GRPCAddr, HTTPAddr: cfg.API.HTTPAddr, TLS: tlsCfg,
		Tokens: cfg.Auth.Tokens, Limits: limitOptions(cfg.API), LeaderTTL: cfg.Leader.SessionTTL, OpsWait: cfg.Ops.WaitTimeout, OpsRetention: cfg.Ops.Retention,
		Audit:            AuditOptions{Docs: docs, Index: cfg.Audit.Index, Retention: cfg.Audit.OutboxRetention},
		Replication:      ReplicationOptions{NATS: nc, DC: cfg.DC, Ledger: cfg.Ledger},
		Handoff:          HandoffOptions{RouterGrace: cfg.Handoff.RouterGrace, CatchUp: cfg.Handoff.CatchUp},
		AutoCityFailover: cfg.CityFailover.Auto,
		Lease:            env.Lease, Registerer: env.Registry, Logger: env.Logger,
	})
	if err != nil {
		return err
	}
	node.Store(n)
	return n.Run(ctx)
}

// connectNATS dials the DC's NATS and keeps reconnecting forever, also
// when it cannot be reached at start: the control API does not wait for
// NATS, only the replication tracking does.
func connectNATS(addr, name string, log zerolog.Logger, auth ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(addr, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("NATS disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS connected")
		}),
	}, auth...)...)
	if err != nil {
		return nil, fmt.Errorf("coordinator: NATS %s: %w", bus.Redact(addr), err)
	}
	return nc, nil
}

// limitOptions are the API limits of a validated configuration.
func limitOptions(a API) LimitOptions {
	proxies, _ := guard.ParseProxies(a.TrustedProxies) // checked by Validate
	return LimitOptions{
		TrustedProxies: proxies, RefusedRate: a.Limits.RefusedRate, RefusedBurst: a.Limits.RefusedBurst,
		MaxWatches: a.Limits.MaxWatches, RefusalWindow: a.Limits.RefusalWindow,
	}
}
