// Package reship is the reship service: its configuration and the engine
// that captures the committed row changes of the DC's current master from
// its binlog (by GTID), maps them to keyspace shards, publishes them as
// ChangeEvents to the DC's outbound JetStream stream, keeps the checkpoint
// in etcd, reports CAPTURED to the ledger and serves the reconciler's
// republish hook. See docs/adr/0005-cross-dc-replication.md.
package reship

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/embednats"
)

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "reship",
		Short: "capture committed writes from the DC's master and ship them to NATS JetStream",
		Long: `reship follows the master record of its cluster in etcd and reads the
current master's binlog from its checkpointed GTID position (as a replica
would, with an account that has REPLICATION SLAVE and SLAVE MONITOR; the instances must run
with binlog_format=ROW and binlog_row_metadata=FULL). Every committed
transaction is cut by shard: each row goes to the shard of its keyspace's
shard-key column (keyspaces from the topology, shard maps from etcd), and
each (transaction, shard) becomes one ChangeEvent with request id
"<gtid>/<shard>" ("<gtid>/<keyspace>/<shard>" when the transaction spans
keyspaces), published to drplane.out.<dc>.<keyspace>.<shard> on the
DC's outbound stream OUT_<dc> (created with a durable sourcing consumer per
other DC) with Nats-Msg-Id "<dc>:<request-id>".

Transactions applied by a collector (skip_replication) are never shipped
again, nor are DDL and tables outside every keyspace. The checkpoint
(/drplane/reship/<dc>/<cluster>) moves only past transactions whose events
were all acknowledged, in order. On a change of master or a broken stream
reship starts over on the current master from the checkpoint. A CAPTURED
ledger update per event goes to drplane.ledger.<dc>.captured (stream
LEDGER_<dc>) without holding up capture, and requests on
drplane.reship.<dc>.republish (a JSON list of OUT_<dc> sequences) publish
those messages again. /readyz reports the binlog stream. With
nats_monitor_url reship reads the NATS server's JetStream sync setting
every 30 s and publishes it for the durability check of drctl status.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: true,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
		// Ready only once the capture engine reports (registered by run
		// after cfg.Connect).
		Readiness: []string{"nats", "mysql-master", "binlog"},
	}
}

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	ep, err := cfg.Connect(ctx, "reship", env)
	if err != nil {
		return err
	}
	defer ep.NATS.Close()
	auth, err := cfg.NATS.Options()
	if err != nil {
		return err
	}
	pub, err := nats.Connect(cfg.NATSURL, append([]nats.Option{
		nats.Name("reship-" + cfg.DC + "-publish"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.Timeout(2 * time.Second),
	}, auth...)...)
	if err != nil {
		return fmt.Errorf("reship: connect %s: %w", bus.Redact(cfg.NATSURL), err)
	}
	defer pub.Close()
	eng, err := NewEngine(Options{
		DC: cfg.DC, Cluster: cfg.MySQL.Cluster, Store: env.State, NATS: ep.NATS, Publish: pub,
		User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(), ServerID: cfg.EffectiveServerID(),
		Start: cfg.Start, Window: cfg.Window, CheckpointInterval: cfg.CheckpointInterval,
		PublishTimeout: cfg.PublishTimeout, LedgerBuffer: cfg.LedgerBuffer,
		Outbound: embednats.StreamOptions{
			MaxAge: cfg.Outbound.MaxAge, MaxBytes: cfg.Outbound.MaxBytes, Duplicates: cfg.Outbound.Duplicates,
		},
		Registry: env.Registry, Logger: env.Logger,
	})
	if err != nil {
		return err
	}
	env.Health.AddReadiness("binlog", eng.Check)
	reporter := bus.NewSyncReporter(bus.SyncReporterOptions{
		DC: cfg.DC, Reporter: env.Record.ID, MonitorURL: cfg.NATSMonitorURL, Store: env.State, Lease: env.Lease,
		Logger: env.Logger,
	})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reporter.Run(gctx) })
	g.Go(func() error { return ep.Master.Run(gctx) })
	g.Go(func() error { return eng.Run(gctx) })
	return g.Wait()
}
