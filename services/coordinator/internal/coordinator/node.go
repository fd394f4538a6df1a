package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auditlog"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/cityfail"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/dclive"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
	"github.com/drplane/drplane/services/coordinator/internal/guard"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
	"github.com/drplane/drplane/services/coordinator/internal/repl"
	"github.com/drplane/drplane/services/coordinator/internal/routes"
	"github.com/drplane/drplane/services/coordinator/internal/server"
	"github.com/drplane/drplane/services/coordinator/internal/ui"
)

// errCacheLoading is the readiness error while the routing cache loads.
var errCacheLoading = errors.New("coordinator: routing cache not loaded yet")

// NodeOptions is what one coordinator process runs with.
type NodeOptions struct {
	Store *state.Store
	// ID names the coordinator: its election value, the leader named in
	// mutations, the source of its audit events.
	ID                 string
	GRPCAddr, HTTPAddr string
	TLS                *tls.Config
	Tokens             []auth.Token
	// Limits bound what one caller can cost; zero fields take package
	// guard's and auditlog's defaults.
	Limits LimitOptions
	// LeaderTTL, OpsWait and OpsRetention default as in packages leader and
	// ops when zero.
	LeaderTTL    time.Duration
	OpsWait      time.Duration
	OpsRetention time.Duration
	// Audit is the audit store; without one the coordinator neither
	// indexes the outbox nor serves AuditService.
	Audit AuditOptions
	// Replication turns replication tracking on: the request ledger (in
	// the audit store), its reconciler and the dead-letter calls.
	Replication ReplicationOptions
	// Handoff bounds the waits of safe shard handoffs; zero fields take
	// package handoff's defaults.
	Handoff HandoffOptions
	// AutoCityFailover is the global auto_city_failover.
	AutoCityFailover bool
	// Lease is the process lease this coordinator's DC views are written
	// on (nil: written without a lease).
	Lease func() clientv3.LeaseID
	// Registerer receives the coordinator's metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// LimitOptions bound the API per caller.
type LimitOptions struct {
	// TrustedProxies are the addresses whose x-forwarded-for is believed.
	TrustedProxies guard.Proxies
	// RefusedRate and RefusedBurst bound the refused calls of one
	// identity (guard.Options).
	RefusedRate  float64
	RefusedBurst int
	// MaxWatches bounds the open watch streams of one identity.
	MaxWatches int
	// RefusalWindow is how long repeated refusals of one caller are
	// gathered into one audit event.
	RefusalWindow time.Duration
}

// AuditOptions say where the audit log is indexed.
type AuditOptions struct {
	// Docs is the document store; the caller closes it after Run.
	Docs docstore.Store
	// Index and Retention default as in package auditlog.
	Index     string
	Retention time.Duration
}

// HandoffOptions bound the waits of a handoff wave.
type HandoffOptions struct {
	// RouterGrace bounds the wait for the routers' acknowledgements of a
	// freeze; CatchUp the wait for the barrier and the targets' watermarks.
	RouterGrace, CatchUp time.Duration
}

// ReplicationOptions say how the coordinator reaches NATS.
type ReplicationOptions struct {
	// NATS is a connection to this DC's NATS; the caller closes it after
	// Run. Nil turns the ledger and the dead-letter calls off (they answer
	// UNAVAILABLE); the replication status still reads etcd.
	NATS *nats.Conn
	// DC is this coordinator's DC: its reconciler retries the requests
	// captured there.
	DC string
	// Ledger configures the ledger; zero fields take package ledger's
	// defaults.
	Ledger ledger.Config
}

// Node is one coordinator: the API server, the routing cache that answers
// reads, the leader candidate, the operations queue and the audit indexer.
type Node struct {
	Leader *leader.Leader
	Queue  *ops.Queue
	Cache  *routes.Cache
	Server *server.Server
	// Indexer is nil without an audit store.
	Indexer *auditlog.Indexer
	// Ledger is nil without NATS or an audit store.
	Ledger *ledger.Ledger
	// Operations runs evacuations, restores and safe shard moves while
	// this coordinator leads.
	Operations *evac.Runner
	// Prober writes this DC's views of the others (nil without a DC);
	// Watcher assesses every DC while this coordinator leads.
	Prober  *dclive.Prober
	Watcher *dclive.Watcher
	// Refusals writes the aggregated audit events of refused calls; Guard
	// throttles refused callers and bounds their watch streams.
	Refusals *auditlog.Refusals
	Guard    *guard.Guard
	// CityFailovers runs the city failovers while this coordinator leads.
	CityFailovers *cityfail.Runner
}

// NewNode builds a coordinator and binds its API ports.
func NewNode(o NodeOptions) (*Node, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	authn, err := auth.New(o.Tokens, server.Policy())
	if err != nil {
		return nil, err
	}
	l, err := leader.New(leader.Options{
		Store: o.Store, ID: o.ID, TTL: o.LeaderTTL, Registerer: o.Registerer,
		Logger: o.Logger.With().Str("component", "leader").Logger(),
	})
	if err != nil {
		return nil, err
	}
	q := ops.New(ops.Options{
		Store: o.Store, Leader: l, WaitTimeout: o.OpsWait, Retention: o.OpsRetention, Now: o.Now,
		Logger: o.Logger.With().Str("component", "ops").Logger(),
	})
	cache := routes.New(routes.Options{Store: o.Store, Logger: o.Logger.With().Str("component", "routes").Logger()})
	refusals := auditlog.NewRefusals(auditlog.RefusalsOptions{
		Store: o.Store, Source: o.ID, Window: o.Limits.RefusalWindow, Registerer: o.Registerer,
		Logger: o.Logger.With().Str("component", "refusals").Logger(), Now: o.Now,
	})
	resolver := guard.Resolver{Auth: authn, Proxies: o.Limits.TrustedProxies}
	unauth := auditlog.NewUnauthenticated(auditlog.UnauthenticatedOptions{
		Refusals: refusals, Resolver: resolver, Source: o.ID, Logger: o.Logger, Now: o.Now,
	})
	gd := guard.New(guard.Options{
		Resolver: resolver, RefusedRate: o.Limits.RefusedRate, RefusedBurst: o.Limits.RefusedBurst,
		MaxWatches: o.Limits.MaxWatches,
		Watches: []string{
			drplanev1.ShardService_WatchRoutes_FullMethodName, drplanev1.EvacuationService_WatchOperation_FullMethodName,
		},
		Throttled: unauth.Throttled, Registerer: o.Registerer, Now: o.Now,
	})
	failover := control.NewFailover(control.FailoverOptions{Store: o.Store, Queue: q, Source: o.ID, Denied: refusals, Logger: o.Logger, Now: o.Now})
	routers := handoff.NewRouters(o.Store, o.ID)
	shards := control.NewShards(control.ShardsOptions{Cache: cache, Queue: q, Store: o.Store, Source: o.ID, Denied: refusals,
		Routers: routers, Operations: evac.NewStore(o.Store), Logger: o.Logger, Now: o.Now})
	evacuation := control.NewEvacuation(control.EvacuationOptions{Store: o.Store, Source: o.ID, Denied: refusals, Logger: o.Logger, Now: o.Now})
	divergences := control.NewDivergence(control.DivergenceOptions{Store: o.Store, Queue: q, Source: o.ID, Denied: refusals, Logger: o.Logger, Now: o.Now})
	cityFailovers := control.NewCityFailover(control.CityFailoverOptions{Store: o.Store, Source: o.ID, Denied: refusals, Logger: o.Logger, Now: o.Now})
	runner := evac.NewRunner(evac.RunnerOptions{
		Store: o.Store, Leader: l, ID: o.ID, Now: o.Now, Logger: o.Logger.With().Str("component", "operations").Logger(),
		Engine: handoff.NewEngine(handoff.Options{
			Store: o.Store, Routers: routers, RouterGrace: o.Handoff.RouterGrace, CatchUp: o.Handoff.CatchUp,
			Actor: "coordinator:" + o.ID, Logger: o.Logger.With().Str("component", "handoff").Logger(), Now: o.Now,
		}),
	})
	var (
		indexer *auditlog.Indexer
		search  drplanev1.AuditServiceServer
	)
	if o.Audit.Docs != nil {
		indexer, err = auditlog.New(auditlog.Options{
			Store: o.Store, Docs: o.Audit.Docs, Index: o.Audit.Index, ID: o.ID, Retention: o.Audit.Retention,
			Registerer: o.Registerer, Logger: o.Logger.With().Str("component", "auditlog").Logger(), Now: o.Now,
		})
		if err != nil {
			return nil, err
		}
		search = auditlog.NewSearch(o.Audit.Docs, o.Audit.Index)
	}
	led, err := newLedger(o)
	if err != nil {
		return nil, err
	}
	replOpts := repl.Options{Store: o.Store, NATS: o.Replication.NATS, Source: o.ID, Denied: refusals, Logger: o.Logger, Now: o.Now}
	if led != nil {
		replOpts.Ledger = led
	}
	replication := repl.New(replOpts)
	refusedREST := func(r *http.Request, err error) {
		gd.RefusedREST(r, err)
		unauth.REST(r, err)
	}
	srv := server.New(server.Options{
		GRPCAddr: o.GRPCAddr, HTTPAddr: o.HTTPAddr, TLS: o.TLS, Auth: authn,
		Topology: &control.Topology{Store: o.Store}, Failover: failover, Shards: shards, Evacuation: evacuation,
		Divergence: divergences, CityFailover: cityFailovers,
		Audit: search, Replication: replication,
		PreAuth: []grpc.UnaryServerInterceptor{
			gd.Unary(), unauth.Unary(), failover.AuditDenied(authn), shards.AuditDenied(authn), evacuation.AuditDenied(authn),
			replication.AuditDenied(authn), cityFailovers.AuditDenied(authn), divergences.AuditDenied(authn),
		},
		PreAuthStream: []grpc.StreamServerInterceptor{gd.Stream(), unauth.Stream()},
		AdmitREST:     gd.AdmitREST,
		RefusedREST:   refusedREST,
		UI: ui.New(ui.Options{Auth: authn, Store: o.Store, Admit: gd.AdmitREST, Refused: refusedREST, OpenStream: gd.OpenWatchREST,
			Logger: o.Logger.With().Str("component", "ui").Logger()}),
		Logger: o.Logger,
	})
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	var prober *dclive.Prober
	if o.Replication.DC != "" {
		if prober, err = dclive.NewProber(dclive.ProberOptions{
			Store: o.Store, DC: o.Replication.DC, NATS: o.Replication.NATS, Lease: o.Lease, ID: o.ID,
			Logger: o.Logger.With().Str("component", "dcprobe").Logger(), Now: o.Now,
		}); err != nil {
			return nil, err
		}
	}
	flipOpts := cityfail.Options{Store: o.Store, Auto: o.AutoCityFailover, ID: o.ID, Actor: "coordinator:" + o.ID,
		Registerer: o.Registerer, Logger: o.Logger.With().Str("component", "cityfail").Logger(), Now: o.Now}
	if led != nil {
		flipOpts.Ledger = ledgerMissing{led}
	}
	cities := cityfail.NewRunner(cityfail.RunnerOptions{Flipper: cityfail.New(flipOpts), Logger: flipOpts.Logger})
	watcher := dclive.NewWatcher(dclive.WatcherOptions{
		Store: o.Store, ID: o.ID, Registerer: o.Registerer, OnLost: declareLost(cities, flipOpts.Logger),
		Logger: o.Logger.With().Str("component", "dclive").Logger(), Now: o.Now,
	})
	return &Node{Leader: l, Queue: q, Cache: cache, Server: srv, Indexer: indexer, Ledger: led, Operations: runner, Prober: prober, Watcher: watcher,
		Refusals: refusals, Guard: gd, CityFailovers: cities}, nil
}

// declareLost stores the city failover of a DC the watcher declared LOST.
func declareLost(r *cityfail.Runner, log zerolog.Logger) dclive.LostFunc {
	return func(ctx context.Context, fence state.Fence, dc string, st dclive.Status) {
		_, err := r.Declare(ctx, fence, cityfail.Request{DC: dc, Verdict: string(st.Code), Reason: st.Reason,
			Witnesses: st.Witnesses, LeaseGoneSince: st.LeaseGoneSince, LastSeen: st.LastSeen})
		switch {
		case errors.Is(err, cityfail.ErrNothingToFlip), errors.Is(err, cityfail.ErrOpen):
			log.Info().Err(err).Str("dc", dc).Msg("DC lost: no new city failover")
		case err != nil:
			log.Warn().Err(err).Str("dc", dc).Msg("DC lost: no city failover stored")
		}
	}
}

// ledgerMissing answers the flipper from the request ledger.
type ledgerMissing struct{ l *ledger.Ledger }

func (m ledgerMissing) Missing(ctx context.Context, origin, target string, limit int) ([]cityfail.Missing, int64, error) {
	us, total, err := m.l.Unapplied(ctx, origin, target, limit)
	out := make([]cityfail.Missing, len(us))
	for i, u := range us {
		out[i] = cityfail.Missing{RequestID: u.RequestID, Keyspace: u.Keyspace, Shard: u.Shard}
	}
	return out, total, err
}

// newLedger builds the request ledger when the coordinator has both NATS
// and a document store; nil otherwise.
func newLedger(o NodeOptions) (*ledger.Ledger, error) {
	if o.Replication.NATS == nil || o.Audit.Docs == nil {
		return nil, nil
	}
	return ledger.New(ledger.Options{
		Store: o.Store, Docs: o.Audit.Docs, NATS: o.Replication.NATS, DC: o.Replication.DC, ID: o.ID,
		Config: o.Replication.Ledger, Registerer: o.Registerer,
		Logger: o.Logger.With().Str("component", "ledger").Logger(), Now: o.Now,
	})
}

// CacheReady is nil once the routing cache has loaded.
func (n *Node) CacheReady() error {
	select {
	case <-n.Cache.Ready():
		return nil
	default:
		return errCacheLoading
	}
}

// Run runs every part until ctx ends or one fails.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Cache.Run(gctx) })
	g.Go(func() error { return n.Leader.Run(gctx) })
	g.Go(func() error { return n.Queue.Run(gctx) })
	g.Go(func() error { return n.Operations.Run(gctx) })
	g.Go(func() error { return n.Server.Run(gctx) })
	g.Go(func() error { return n.Refusals.Run(gctx) })
	if n.Indexer != nil {
		g.Go(func() error { return n.Indexer.Run(gctx) })
	}
	if n.Ledger != nil {
		g.Go(func() error { return n.Ledger.Run(gctx) })
	}
	if n.Prober != nil {
		g.Go(func() error { return n.Prober.Run(gctx) })
	}
	g.Go(func() error { return n.watchDCs(gctx) })
	return g.Wait()
}

// watchDCs runs the DC liveness watcher and the city failovers during every term of this
// coordinator's leadership, until ctx ends.
func (n *Node) watchDCs(ctx context.Context) error {
	for {
		term, err := n.Leader.Await(ctx)
		if err != nil {
			return nil //nolint:nilerr // ctx ended: a clean stop
		}
		tctx, cancel := term.Context(ctx)
		g, gctx := errgroup.WithContext(tctx)
		g.Go(func() error { return n.Watcher.Lead(gctx, term.Fence) })
		g.Go(func() error { return n.CityFailovers.Lead(gctx, term.Fence) })
		g.Go(func() error { return n.CityFailovers.Returns(gctx, term.Fence) })
		_ = g.Wait()
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}
