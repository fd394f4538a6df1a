// Package collector is the collector service: its configuration and the
// wiring of its parts — the DC's NATS and current master, the streams it
// owns (IN_<dc>, DLQ_<dc>, LEDGER_<dc>) kept in step with the topology, and
// the apply path (package apply) that applies the other DCs' changes to the
// DC's master exactly once.
package collector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/collector/internal/apply"
)

// Config is collector's configuration.
type Config struct {
	bus.ServiceConfig `yaml:",inline"`
	// BatchSize is the most messages applied in one MySQL transaction.
	BatchSize int `yaml:"batch_size"`
	// BatchWait is how long a batch waits to fill after its first message.
	BatchWait time.Duration `yaml:"batch_wait"`
	// AckWait is the inbound consumer's ack wait.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxRedeliveries is how many more times a request that fails alone
	// with a non-transient error is tried before it is dead-lettered.
	MaxRedeliveries int `yaml:"max_redeliveries"`
	// WatermarkInterval is the most often per-source watermarks are
	// written to etcd.
	WatermarkInterval time.Duration `yaml:"watermark_interval"`
	// StatsInterval is how often the replication statistics are written.
	StatsInterval time.Duration `yaml:"stats_interval"`
	// LedgerBuffer is how many ledger facts may wait to be published.
	LedgerBuffer int `yaml:"ledger_buffer"`
	// Test holds hooks for tests and drills; never set them in production.
	Test TestHooks `yaml:"test"`
}

// TestHooks are TEST-ONLY switches.
type TestHooks struct {
	// DuplicateDelivery republishes every consumed message once more into
	// IN_<dc> (under another Nats-Msg-Id) before acking it, so that every
	// request is delivered twice; the dedup row must make the second a no-op.
	DuplicateDelivery bool `yaml:"duplicate_delivery"`
	// HoldBatchAfter (0: off): once the collector applied that many
	// requests, it holds the next batch uncommitted, its transaction open,
	// until it ends, and logs that it does; a test kills it then
	// with a batch in hand.
	HoldBatchAfter int `yaml:"hold_batch_after"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		ServiceConfig:     bus.DefaultServiceConfig(),
		BatchSize:         apply.DefaultBatchSize,
		BatchWait:         apply.DefaultBatchWait,
		AckWait:           apply.DefaultAckWait,
		MaxRedeliveries:   apply.DefaultMaxRedeliveries,
		WatermarkInterval: apply.DefaultWatermarkInterval,
		StatsInterval:     apply.DefaultStatsInterval,
		LedgerBuffer:      apply.DefaultLedgerBuffer,
	}
}

// Validate checks the configuration, naming the field.
func (c *Config) Validate() error {
	if err := c.ServiceConfig.Validate(); err != nil {
		return err
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return config.Invalid("batch_size", "%d out of range 1-10000", c.BatchSize)
	case c.BatchWait <= 0 || c.BatchWait > time.Second:
		return config.Invalid("batch_wait", "%s out of range (0, 1s]", c.BatchWait)
	case c.AckWait < time.Second:
		return config.Invalid("ack_wait", "must be at least 1s, got %s", c.AckWait)
	case c.MaxRedeliveries < 0 || c.MaxRedeliveries > 100:
		return config.Invalid("max_redeliveries", "%d out of range 0-100", c.MaxRedeliveries)
	case c.WatermarkInterval < 10*time.Millisecond || c.WatermarkInterval > time.Minute:
		return config.Invalid("watermark_interval", "%s out of range 10ms-1m", c.WatermarkInterval)
	case c.StatsInterval < 100*time.Millisecond || c.StatsInterval > time.Minute:
		return config.Invalid("stats_interval", "%s out of range 100ms-1m", c.StatsInterval)
	case c.LedgerBuffer < 1:
		return config.Invalid("ledger_buffer", "must be at least 1")
	case c.Test.HoldBatchAfter < 0:
		return config.Invalid("test.hold_batch_after", "must not be negative, got %d", c.Test.HoldBatchAfter)
	}
	return nil
}

// Flags binds collector's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	c.ServiceConfig.Flags(fs, "MySQL cluster whose master receives the changes")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "most messages applied in one MySQL transaction")
	fs.DurationVar(&c.BatchWait, "batch-wait", c.BatchWait, "how long a batch waits to fill after its first message")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "ack wait of the inbound consumer")
	fs.IntVar(&c.MaxRedeliveries, "max-redeliveries", c.MaxRedeliveries, "retries of a request failing with a non-transient error before it is dead-lettered")
	fs.DurationVar(&c.WatermarkInterval, "watermark-interval", c.WatermarkInterval, "most often the per-source watermarks are written to etcd")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "collector",
		Short: "apply other DCs' changes from NATS JetStream to the DC's master, exactly once",
		Long: `collector applies the changes the other DCs shipped to this DC.

It keeps this DC's inbound stream IN_<dc> sourcing every other DC's outbound
stream (peers from the topology in etcd), and its dead-letter (DLQ_<dc>) and
ledger (LEDGER_<dc>) streams. A durable pull consumer reads IN_<dc> in order,
in batches; each batch is ONE transaction on the DC's current master (it
follows the master record), as the application user, with
skip_replication=1 so that reship never ships the changes back. Each request
writes a dedup row (origin_dc, request_id) into <database>.drplane_applied
(created at start) in the same transaction: a request delivered again, also
past the JetStream dedup window, is skipped. Rows are applied by primary key
(upsert of the after image, delete by key). Each row change records its
source position (origin, GTID) in <database>.drplane_row_position: a change
older than the one recorded for its row from the same origin (a late retry)
is skipped for that row and counted (drplane_collector_stale_rows_total).
Messages are acked after the commit.

Transient errors (connection lost, read-only during a failover, deadlock,
lock wait) are retried with backoff and never dead-lettered. A batch that
fails otherwise is retried one request at a time; a request that still fails
(max_redeliveries more times; an undecodable message at once) goes to
DLQ_<dc> with the error in its headers, is audited (replication.dead_letter)
and acked, and the stream keeps flowing.

It reports applied and dead-lettered requests to the ledger stream
(asynchronously), per-source watermarks to /drplane/watermarks/<dc>/... and
per-origin statistics (drctl repl status) to /drplane/repl/<dc>/<origin>.
Run ONE collector per DC: its consumer is the order of apply.

The YAML keys test.duplicate_delivery (deliver every message twice) and
test.hold_batch_after (after that many requests, hold the next batch
uncommitted until the process ends) are TEST-ONLY hooks.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: true,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
		// Ready only once the apply path runs, which needs NATS, the
		// master and the streams (registered by run and cfg.Connect).
		Readiness: []string{"nats", "mysql-master", "apply"},
	}
}

// errNotReady is the readiness error until the apply path runs.
var errNotReady = errors.New("collector: not applying yet")

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	ep, err := cfg.Connect(ctx, "collector", env)
	if err != nil {
		return err
	}
	defer ep.NATS.Close()
	js, err := jetstream.New(ep.NATS)
	if err != nil {
		return fmt.Errorf("collector: JetStream: %w", err)
	}
	if cfg.Test.DuplicateDelivery {
		env.Logger.Warn().Msg("TEST HOOK test.duplicate_delivery is on: every message is delivered twice")
	}
	if cfg.Test.HoldBatchAfter > 0 {
		env.Logger.Warn().Int("after", cfg.Test.HoldBatchAfter).Msg("TEST HOOK test.hold_batch_after is on: a batch will be held uncommitted")
	}
	topo := newTopoWatch(env.State, cfg.DC, js, env.Logger)
	ap, err := apply.New(apply.Options{
		DC: cfg.DC, ID: cfg.ID, NATS: ep.NATS, Master: ep.Master, Store: env.State,
		Keyspaces: topo.Keyspaces, Lease: env.Lease,
		BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait, AckWait: cfg.AckWait,
		MaxRedeliveries: cfg.MaxRedeliveries, WatermarkInterval: cfg.WatermarkInterval,
		StatsInterval: cfg.StatsInterval, LedgerBuffer: cfg.LedgerBuffer,
		DuplicateDelivery: cfg.Test.DuplicateDelivery, HoldBatchAfter: cfg.Test.HoldBatchAfter,
		Logger: env.Logger, Registry: env.Registry,
	})
	if err != nil {
		return err
	}
	env.Health.AddReadiness("apply", func(context.Context) error {
		select {
		case <-ap.Ready():
			return nil
		default:
			return errNotReady
		}
	})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ep.Master.Run(gctx) })
	g.Go(func() error { return topo.Run(gctx) })
	g.Go(func() error {
		select {
		case <-topo.Ready():
		case <-gctx.Done():
			return nil
		}
		return ap.Run(gctx)
	})
	return g.Wait()
}
