package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// ErrInvalidOptions means Options lack something required.
var ErrInvalidOptions = errors.New("ledger: invalid options")

// Defaults of Options.
const (
	DefaultFetchWait      = time.Second
	DefaultBatchSize      = 500
	DefaultRequestTimeout = 30 * time.Second
	DefaultAckWait        = 30 * time.Second
	DefaultMinBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	// consumerInactive is how long a coordinator's durable consumer on a
	// ledger stream outlives the coordinator; one that comes back later
	// indexes the stream again from its start (harmless, only slower).
	consumerInactive = 72 * time.Hour
	// topologyRetry paces topology reads after a failure.
	topologyRetry = time.Second
	// consumerTimeout bounds the creation of a ledger consumer: a request
	// to a DC that is down is not refused, it times out, and a short
	// timeout lets the follower notice the DC's return sooner.
	consumerTimeout = 2 * time.Second
)

// Options configure a Ledger.
type Options struct {
	// Store is the etcd state store: the topology (which DCs' ledger
	// streams to follow) and the audit outbox.
	Store *state.Store
	// Docs is the document store holding the ledger index.
	Docs docstore.Store
	// NATS is a connection to this DC's NATS; other DCs' ledger streams are
	// reached through it in their JetStream domains (named after the DCs).
	NATS *nats.Conn
	// DC is this coordinator's DC: its reconciler retries the requests
	// captured there.
	DC string
	// ID names this coordinator: its durable consumers are named after it,
	// and it is the source of its audit events.
	ID     string
	Config Config
	// FetchWait is the longest one fetch from a ledger stream waits
	// (default 1s); BatchSize the most facts it takes (default 500).
	FetchWait time.Duration
	BatchSize int
	// AckWait is the ack wait of the ledger consumers (default 30s).
	AckWait time.Duration
	// RequestTimeout bounds a republish request to reship (default 30s).
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// stream or store (defaults 200ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Ledger indexes every DC's ledger facts into the ledger index, retries the
// requests of its own DC that stay unapplied, and answers queries.
type Ledger struct {
	o      Options
	m      *metrics
	outbox *audit.Outbox
	ready  chan struct{}

	// writeMu serialises the read-modify-write of documents within this
	// process (the stream followers and the reconciler), so that derived
	// fields are computed from every fact another part wrote.
	writeMu sync.Mutex

	mu       sync.Mutex
	auditSeq uint64
}

// New checks the options and returns a ledger; Run starts it.
func New(o Options) (*Ledger, error) {
	switch {
	case o.Store == nil:
		return nil, fmt.Errorf("%w: no etcd store", ErrInvalidOptions)
	case o.Docs == nil:
		return nil, fmt.Errorf("%w: no document store", ErrInvalidOptions)
	case o.NATS == nil:
		return nil, fmt.Errorf("%w: no NATS connection", ErrInvalidOptions)
	case !topology.ValidName(o.DC):
		return nil, fmt.Errorf("%w: DC %q", ErrInvalidOptions, o.DC)
	case o.ID == "":
		return nil, fmt.Errorf("%w: no coordinator id", ErrInvalidOptions)
	}
	def := DefaultConfig()
	if o.Config.Index == "" {
		o.Config.Index = def.Index
	}
	if err := docstore.ValidateIndexName(o.Config.Index); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if o.Config.RetryAfter <= 0 {
		o.Config.RetryAfter = def.RetryAfter
	}
	if o.Config.ReconcileEvery <= 0 {
		o.Config.ReconcileEvery = def.ReconcileEvery
	}
	if o.Config.MaxPerRound <= 0 {
		o.Config.MaxPerRound = def.MaxPerRound
	}
	o.Config.MaxPerRound = min(o.Config.MaxPerRound, maxPerRoundLimit)
	if o.Config.MaxAttempts <= 0 {
		o.Config.MaxAttempts = def.MaxAttempts
	}
	if o.FetchWait <= 0 {
		o.FetchWait = DefaultFetchWait
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Ledger{o: o, m: newMetrics(o.Registerer), outbox: audit.NewOutbox(o.Store), ready: make(chan struct{})}, nil
}

// Index is the ledger index name.
func (l *Ledger) Index() string { return l.o.Config.Index }

// Ready is closed once the ledger index exists.
func (l *Ledger) Ready() <-chan struct{} { return l.ready }

// Run indexes the ledger streams of every DC in the topology and runs the
// reconciler until ctx ends; it returns nil then. Failures of NATS, etcd
// and the store are retried with backoff; it returns an error only when
// the ledger index cannot be used at all (its mapping conflicts).
func (l *Ledger) Run(ctx context.Context) error {
	if err := l.ensureIndex(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	close(l.ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.followTopology(gctx) })
	g.Go(func() error { return l.reconcile(gctx) })
	return g.Wait()
}

// ensureIndex creates or checks the ledger index, retrying while the store
// is unavailable.
func (l *Ledger) ensureIndex(ctx context.Context) error {
	b := l.backoff()
	for ctx.Err() == nil {
		err := l.o.Docs.EnsureIndex(ctx, l.o.Config.Index, Mapping())
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, docstore.ErrUnavailable):
			l.fail(stageEnsure, err, "ledger store unavailable; retrying")
			b.Wait(ctx)
		default:
			l.fail(stageEnsure, err, "cannot create the ledger index")
			return fmt.Errorf("ledger: ensure index %s: %w", l.o.Config.Index, err)
		}
	}
	return nil
}

// followTopology keeps one stream follower per DC of the topology.
func (l *Ledger) followTopology(ctx context.Context) error {
	followers := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer func() {
		for _, cancel := range followers {
			cancel()
		}
		wg.Wait()
	}()
	use := func(t topology.Topology) {
		want := map[string]bool{}
		for _, dc := range t.DCs {
			want[dc.Name] = true
			if _, ok := followers[dc.Name]; ok {
				continue
			}
			fctx, cancel := context.WithCancel(ctx)
			followers[dc.Name] = cancel
			wg.Go(func() { l.follow(fctx, dc.Name) })
		}
		for dc, cancel := range followers {
			if !want[dc] {
				cancel()
				delete(followers, dc)
			}
		}
	}
	for ctx.Err() == nil {
		t, rev, err := l.o.Store.Topology(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.o.Logger.Warn().Err(err).Msg("ledger: cannot read the topology; retrying")
				retry.Sleep(ctx, topologyRetry)
			}
			continue
		}
		use(t)
		for ev := range state.Watch[topology.Topology](ctx, l.o.Store, l.o.Store.TopologyKey(), false, rev+1) {
			if !ev.Deleted {
				use(ev.Value)
			}
		}
		// The watch broke (or ctx ended): read again after a pause.
		retry.Sleep(ctx, topologyRetry)
	}
	return nil
}

// consumerName is this coordinator's durable consumer name on every ledger
// stream: "ledger_<id>" with the characters a consumer name may not hold
// replaced.
func (l *Ledger) consumerName() string {
	return "ledger_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, l.o.ID)
}

// fail counts and logs a failure of stage.
func (l *Ledger) fail(stage string, err error, msg string) {
	l.m.errors.WithLabelValues(stage).Inc()
	l.o.Logger.Warn().Err(err).Str("stage", stage).Msg(msg)
}

func (l *Ledger) backoff() *retry.Backoff { return retry.New(l.o.MinBackoff, l.o.MaxBackoff) }
