package router

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Defaults of the Options durations.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	DefaultGrace      = 30 * time.Second
)

// Options configure a Router.
type Options struct {
	// Conn reaches any coordinator; every coordinator serves WatchRoutes.
	// apiclient's connection carries the bearer token as call
	// credentials. The role viewer is enough. Required.
	Conn grpc.ClientConnInterface
	// DC is the DC this process runs in. Required.
	DC string
	// Keyspaces are the keyspaces to watch; empty watches all of them (the
	// router then asks TopologyService which exist).
	Keyspaces []string
	// DB opens the handle for a master endpoint, typically sql.Open with the
	// application's user, password and database for m.Addr. The router
	// keeps one *sql.DB per (dc, cluster, addr) and closes it Grace after
	// no routing table names it. Required for WriteDB only.
	DB func(m Master) (*sql.DB, error)
	// Logger receives stream and handle events. The zero value logs
	// nothing.
	Logger zerolog.Logger
	// Now is the clock of grace periods and staleness; nil means time.Now.
	Now func() time.Time
	// Registry, when set, receives the router's metrics
	// (drplane_router_*). One registry takes one router.
	Registry prometheus.Registerer

	// MinBackoff and MaxBackoff bound the wait between attempts to reopen
	// the route stream (doubling, with jitter; reset once a stream
	// delivered). Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Grace is how long a replaced master's handle stays open for the
	// transactions still using it. Default DefaultGrace.
	Grace time.Duration
	// AckDrain bounds how long the acknowledgement of a routing table that
	// froze or gave away a shard waits for the writes Write admitted to that
	// shard before (default DefaultAckDrain).
	AckDrain time.Duration
	// Client names this process in the coordinator's list of routers
	// (optional).
	Client string
	// MaxStale, when positive, makes WriteDB refuse local writes with
	// ErrStale once the route stream has been down that long. Zero keeps
	// writing on the last routes received, however old.
	MaxStale time.Duration
}

// snapshot is what lookups read: immutable once published.
type snapshot struct {
	tables map[string]*table
	// known are the keyspaces a missing table is "not ready" for rather
	// than unknown: Options.Keyspaces, or the coordinator's keyspaces when
	// watching all. nil while watching all before the coordinator named
	// them: every keyspace is then "not ready".
	known map[string]bool
}

// Router routes keys of the watched keyspaces to their shard, owner DC and
// master, and hands out the local master's *sql.DB for writes this DC may
// take. It is safe for concurrent use.
type Router struct {
	o      Options
	log    zerolog.Logger
	client drplanev1.ShardServiceClient
	topo   drplanev1.TopologyServiceClient
	m      *metrics
	dbs    *dbs

	snap    atomic.Pointer[snapshot]
	ready   chan struct{}
	readyMu sync.Once
	// downSince is when the route stream was last seen failing, in Unix
	// nanoseconds of Options.Now; 0 while a stream delivers.
	downSince atomic.Int64
	running   atomic.Bool
	inflight  *inflight
}

// New checks o and returns a router; Run feeds it.
func New(o Options) (*Router, error) {
	if o.Conn == nil {
		return nil, fmt.Errorf("%w: Conn is required", ErrOptions)
	}
	if o.DC == "" {
		return nil, fmt.Errorf("%w: DC is required", ErrOptions)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.AckDrain <= 0 {
		o.AckDrain = DefaultAckDrain
	}
	s := &snapshot{tables: map[string]*table{}}
	if len(o.Keyspaces) > 0 {
		s.known = make(map[string]bool, len(o.Keyspaces))
		for _, ks := range o.Keyspaces {
			if ks == "" {
				return nil, fmt.Errorf("%w: empty keyspace name", ErrOptions)
			}
			s.known[ks] = true
		}
	}
	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	log := o.Logger.With().Str("component", "router").Str("dc", o.DC).Logger()
	r := &Router{
		o:        o,
		log:      log,
		client:   drplanev1.NewShardServiceClient(o.Conn),
		topo:     drplanev1.NewTopologyServiceClient(o.Conn),
		m:        m,
		dbs:      &dbs{open: o.DB, now: o.Now, grace: o.Grace, log: log, entries: map[dbKey]*dbEntry{}},
		ready:    make(chan struct{}),
		inflight: newInflight(),
	}
	r.snap.Store(s)
	// Until a stream delivers, routes are as stale as they get.
	r.downSince.Store(o.Now().UnixNano())
	return r, nil
}

// Ready is closed once every watched keyspace has a routing table.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Revision returns the map revision of the keyspace's routing table in use,
// 0 when there is none.
func (r *Router) Revision(keyspace string) int64 {
	if t := r.snap.Load().tables[keyspace]; t != nil {
		return t.revision
	}
	return 0
}

// Route maps key to its shard, owner DC and master from the routing table
// in memory; it makes no call and, on success, does not allocate. Keys are
// read as pkg/shardmap describes (the UTF-8 bytes hashed for HASH
// keyspaces, an unsigned decimal for RANGE ones). It fails with
// ErrNotReady, ErrUnknownKeyspace, or shardmap.ErrBadKey for a RANGE key
// that is not an unsigned decimal.
func (r *Router) Route(keyspace, key string) (Route, error) {
	rt, err := r.route(keyspace, key)
	if err != nil {
		r.m.route[missOutcome(err)].Inc()
		return Route{}, err
	}
	r.m.routed.Inc()
	return rt, nil
}

// route is Route without the metrics. The error paths live in functions of
// their own, so that route stays small enough to be inlined.
func (r *Router) route(keyspace, key string) (Route, error) {
	t := r.snap.Load().tables[keyspace]
	if t == nil {
		return Route{}, r.missing(keyspace)
	}
	rt, err := t.route(key)
	if err != nil {
		return Route{}, badKey(keyspace, key, err)
	}
	return rt, nil
}

// missing explains why keyspace has no table.
func (r *Router) missing(keyspace string) error {
	s := r.snap.Load()
	if s.tables[keyspace] == nil && s.known != nil && !s.known[keyspace] {
		return fmt.Errorf("%w: %q", ErrUnknownKeyspace, keyspace)
	}
	return fmt.Errorf("%w: keyspace %q", ErrNotReady, keyspace)
}

func badKey(keyspace, key string, err error) error {
	return fmt.Errorf("router: keyspace %q key %q: %w", keyspace, key, err)
}

// WriteDB returns the handle to write key through, with the key's route.
//
// When this DC owns the key's shard and the shard is ACTIVE or MOVING, it is
// the *sql.DB of the owner DC's current master (opened with Options.DB on
// first use, then cached). Otherwise it fails, in this order of checks:
//
//   - the lookup errors of Route;
//   - ErrShardFrozen when the shard is FROZEN, whoever owns it (retryable);
//   - a *NotOwner naming the owner DC and its master when another DC owns
//     the shard (use errors.As; not retryable here: forward the write);
//   - ErrNoMaster when the table names no master for this DC (retryable);
//   - ErrStale when Options.MaxStale is set and the route stream has been
//     down longer (retryable);
//   - the error of Options.DB, ErrNoDB, ErrClosed, or ctx's error.
//
// The route is returned with every error after the lookup. A master change
// in the routing table switches the handle returned from then on; the old
// handle is closed Options.Grace later, so a transaction begun on it just
// before the switch can still finish (the old master, now read-only, will
// refuse its writes).
func (r *Router) WriteDB(ctx context.Context, keyspace, key string) (*sql.DB, Route, error) {
	return r.writeDB(ctx, keyspace, key, nil)
}

// writeDB is WriteDB; track, when set, is called with the route once the
// write is admitted, under a table that was still current after the call
// (a table swapped in meanwhile makes it look up again, after untrack).
func (r *Router) writeDB(ctx context.Context, keyspace, key string, track func(Route)) (*sql.DB, Route, error) {
	for {
		t := r.snap.Load().tables[keyspace]
		rt, err := r.route(keyspace, key)
		if err != nil {
			r.m.write[missOutcome(err)].Inc()
			return nil, Route{}, err
		}
		if err := r.admit(keyspace, rt); err != nil {
			return nil, rt, err
		}
		if track != nil {
			track(rt)
			if r.snap.Load().tables[keyspace] != t {
				r.inflight.done(shardKey{rt.Keyspace, rt.Shard})
				continue
			}
		}
		db, err := r.dbs.get(ctx, rt.Master)
		if err != nil {
			if track != nil {
				r.inflight.done(shardKey{rt.Keyspace, rt.Shard})
			}
			r.m.write[outcomeError].Inc()
			return nil, rt, err
		}
		r.m.write[outcomeLocal].Inc()
		return db, rt, nil
	}
}

// admit applies the write rules of WriteDB to a route.
func (r *Router) admit(keyspace string, rt Route) error {
	switch {
	case rt.State == shardmap.Frozen:
		r.m.write[outcomeFrozen].Inc()
		return fmt.Errorf("%w: keyspace %q shard %d (owner %s)", ErrShardFrozen, rt.Keyspace, rt.Shard, rt.Owner)
	case !rt.Local:
		r.m.write[outcomeNotOwner].Inc()
		return &NotOwner{Keyspace: rt.Keyspace, Shard: rt.Shard, DC: r.o.DC, Owner: rt.Owner, Master: rt.Master}
	case !rt.Master.Known():
		r.m.write[outcomeNoMaster].Inc()
		return fmt.Errorf("%w: keyspace %q shard %d: no master of cluster %q in %s",
			ErrNoMaster, rt.Keyspace, rt.Shard, r.cluster(keyspace), r.o.DC)
	}
	if d := r.staleFor(); d > 0 {
		r.m.write[outcomeStale].Inc()
		return fmt.Errorf("%w: the route stream has been down for %s (limit %s)", ErrStale, d.Round(time.Millisecond), r.o.MaxStale)
	}
	return nil
}

// cluster returns the keyspace's cluster as its table names it.
func (r *Router) cluster(keyspace string) string {
	if t := r.snap.Load().tables[keyspace]; t != nil {
		return t.cluster
	}
	return ""
}

// staleFor returns how long the stream has been down when that exceeds
// Options.MaxStale, else 0.
func (r *Router) staleFor() time.Duration {
	if r.o.MaxStale <= 0 {
		return 0
	}
	since := r.downSince.Load()
	if since == 0 {
		return 0
	}
	if d := r.o.Now().Sub(time.Unix(0, since)); d > r.o.MaxStale {
		return d
	}
	return 0
}
