package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// ConsumerName is the durable pull consumer on IN_<dc>.
const ConsumerName = "collector"

// Defaults of Options.
const (
	DefaultBatchSize         = 500
	DefaultBatchWait         = 5 * time.Millisecond
	DefaultAckWait           = 10 * time.Second
	DefaultMaxRedeliveries   = 3
	DefaultWatermarkInterval = 500 * time.Millisecond
	DefaultStatsInterval     = time.Second
	DefaultLedgerBuffer      = 16384
)

// Retry pacing.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Options configure an Applier.
type Options struct {
	// DC is this DC; ID names this collector process (stats, audit actor).
	DC, ID string
	// NATS is a connection to this DC's NATS server; the streams IN_<dc>,
	// DLQ_<dc> and LEDGER_<dc> must exist.
	NATS *nats.Conn
	// Master is the DC's current master, reached as the application user.
	Master MasterDB
	// Store is the etcd store (watermarks, statistics, audit outbox).
	Store *state.Store
	// Keyspaces returns the topology's keyspaces, current at the call.
	Keyspaces func() []topology.Keyspace
	// Lease is the process lease the statistics are written on.
	Lease func() clientv3.LeaseID
	// BatchSize is the most messages applied in one transaction (default
	// 500); the consumer's MaxAckPending is twice that.
	BatchSize int
	// BatchWait is how long a batch waits to fill after its first message
	// (default 5 ms).
	BatchWait time.Duration
	// AckWait is the consumer's ack wait (default 10 s); while a batch is
	// retried the collector keeps its messages with in-progress acks.
	AckWait time.Duration
	// MaxRedeliveries is how many more times a request that failed alone
	// with a non-transient error is tried before it is dead-lettered
	// (default 3; undecodable messages are dead-lettered at once).
	MaxRedeliveries int
	// WatermarkInterval is the most often watermarks are written (default
	// 500 ms); StatsInterval how often statistics are (default 1 s).
	WatermarkInterval, StatsInterval time.Duration
	// LedgerBuffer is how many ledger facts wait for publishing before new
	// ones are dropped (default 16384).
	LedgerBuffer int
	// DuplicateDelivery is a TEST hook: every consumed message is published
	// once more into IN_<dc> (under another Nats-Msg-Id) before it is acked,
	// so every request is delivered twice.
	DuplicateDelivery bool
	// HoldBatchAfter is a TEST hook (0: off): once this run applied that
	// many requests, the next batch is held with its statements executed
	// and its transaction open, before the commit, until ctx ends (then it
	// is rolled back and its messages come again). A test that kills the
	// process then kills it with a batch in hand, for certain.
	HoldBatchAfter int
	Logger         zerolog.Logger
	Registry       prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() error {
	switch {
	case !topology.ValidName(o.DC):
		return fmt.Errorf("%w: DC %q", ErrOptions, o.DC)
	case o.NATS == nil || o.Master == nil || o.Store == nil || o.Keyspaces == nil || o.Lease == nil:
		return fmt.Errorf("%w: NATS, Master, Store, Keyspaces and Lease are required", ErrOptions)
	case o.BatchSize < 0 || o.MaxRedeliveries < 0 || o.HoldBatchAfter < 0:
		return fmt.Errorf("%w: negative BatchSize, MaxRedeliveries or HoldBatchAfter", ErrOptions)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchWait <= 0 {
		o.BatchWait = DefaultBatchWait
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.WatermarkInterval <= 0 {
		o.WatermarkInterval = DefaultWatermarkInterval
	}
	if o.StatsInterval <= 0 {
		o.StatsInterval = DefaultStatsInterval
	}
	if o.LedgerBuffer <= 0 {
		o.LedgerBuffer = DefaultLedgerBuffer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Applier consumes IN_<dc> and applies it to the DC's master.
type Applier struct {
	o    Options
	js   jetstream.JetStream
	m    *metrics
	log  zerolog.Logger
	sess session
	led  *ledger
	prog *progress
	maps *maps
	// discards are the requests their origins lost after shipping them.
	discards *discards
	// replays are the divergence entries to reapply here.
	replays *replays
	outbox  *audit.Outbox
	// ensured holds the databases whose dedup table exists.
	ensured map[string]bool
	// barrierTables holds the databases whose barrier table this run
	// created (only the barrier loop, markBarriers, reads and writes it).
	barrierTables map[string]bool
	auditSeq      uint64
	ready         chan struct{}
	// applied counts the requests this run applied (for HoldBatchAfter).
	applied int
	// afterCommit, when set (tests), runs after each batch's commit and
	// before its acks; an error stops Run at once, as a crash would.
	afterCommit func() error
}

// errStopped wraps the error of the afterCommit hook.
var errStopped = errors.New("apply: stopped after commit")

// New returns an applier; Run runs it.
func New(o Options) (*Applier, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(o.NATS)
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream context: %w", ErrOptions, err)
	}
	log := o.Logger.With().Str("component", "apply").Logger()
	m := newMetrics(o.Registry)
	led, err := newLedger(o.NATS, o.DC, o.LedgerBuffer, m, log)
	if err != nil {
		return nil, err
	}
	a := &Applier{
		o: o, js: js, m: m, log: log, led: led,
		sess:    session{master: o.Master, log: log},
		prog:    newProgress(o.DC, o.ID, o.Store, o.Lease, o.Now, log),
		outbox:  audit.NewOutbox(o.Store),
		ensured: map[string]bool{},
		ready:   make(chan struct{}),

		barrierTables: map[string]bool{},
	}
	a.maps = newMaps(a)
	a.discards = newDiscards(a)
	a.replays = newReplays(a)
	return a, nil
}

// Ready is closed once the dedup tables exist and the consumer is set up.
func (a *Applier) Ready() <-chan struct{} { return a.ready }

// Run applies the inbound stream until ctx ends.
func (a *Applier) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.led.run(gctx) })
	g.Go(func() error { return a.maps.run(gctx) })
	g.Go(func() error { return a.discards.run(gctx) })
	g.Go(func() error { return a.replays.run(gctx) })
	g.Go(func() error { return a.markBarriers(gctx) })
	g.Go(func() error {
		return a.prog.run(gctx, a.o.WatermarkInterval, a.o.StatsInterval, a.pending)
	})
	g.Go(func() error {
		defer a.sess.release()
		return a.consume(gctx)
	})
	return g.Wait()
}

// consume sets up and runs the consumer, starting over after failures.
func (a *Applier) consume(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.discards.loaded:
	}
	b := retry.New(minBackoff, maxBackoff)
	for {
		err := a.consumeOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errStopped) {
			return err
		}
		a.log.Warn().Err(err).Dur("retry_in", b.Next()).Msg("consumer stopped; starting over")
		if !b.Wait(ctx) {
			return nil
		}
	}
}

// consumeOnce ensures the dedup tables and the consumer, resets the
// consumer to its ack floor (messages delivered to an earlier run and not
// acked come again at once, in order), and applies batches until ctx ends
// or the consumer fails.
func (a *Applier) consumeOnce(ctx context.Context) error {
	for _, ks := range a.o.Keyspaces() {
		if err := a.ensureTable(ctx, ks.Database); err != nil {
			return err
		}
	}
	stream := embednats.InStream(a.o.DC)
	cons, err := a.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "applies " + stream + " to the master of " + a.o.DC,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       a.o.AckWait,
		MaxDeliver:    -1,
		// One batch in hand and one buffered; the sequencer keeps the
		// order when something is redelivered.
		MaxAckPending: 2 * a.o.BatchSize,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", ConsumerName, stream, err)
	}
	reset, err := a.js.ResetConsumer(ctx, stream, ConsumerName)
	if err != nil {
		return fmt.Errorf("reset consumer %s on %s: %w", ConsumerName, stream, err)
	}
	seq := &sequencer{next: reset.ResetSeq, log: a.log}
	if s, err := a.js.Stream(ctx, stream); err == nil {
		seq.next = max(seq.next, s.CachedInfo().State.FirstSeq)
		seq.stored = func(n uint64) (bool, error) {
			_, err := s.GetMsg(ctx, n)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return false, nil
			}
			return err == nil, err
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(a.o.BatchSize))
	if err != nil {
		return fmt.Errorf("consume %s: %w", stream, err)
	}
	defer func() { it.Stop() }()
	select {
	case <-a.ready:
	default:
		close(a.ready)
	}
	a.log.Info().Str("stream", stream).Int("batch", a.o.BatchSize).Uint64("from", seq.next).Msg("applying")
	for {
		msgs, err := a.next(ctx, it)
		if err != nil {
			return err
		}
		keep, stale, gap := seq.filter(msgs)
		if len(keep) > 0 {
			if err := a.process(ctx, keep); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// Copies of handled messages; acked only now, since a copy of a
		// message of this very batch acks the same stream sequence.
		for _, m := range stale {
			a.m.redeliveries.Inc()
			_ = m.Ack()
		}
		if !gap {
			continue
		}
		// Redeliver from the first missing message, in order.
		a.m.retries.WithLabelValues("gap").Inc()
		a.log.Info().Uint64("from", seq.next).Msg("gap in delivery; resetting the consumer")
		// The same subscription goes on: a stopped one's last pull request
		// would keep taking deliveries for a while on a server with
		// leafnodes or gateways, and they would be lost to it.
		if _, err := a.js.ResetConsumerToSequence(ctx, stream, ConsumerName, seq.next); err != nil {
			return fmt.Errorf("reset consumer %s on %s to %d: %w", ConsumerName, stream, seq.next, err)
		}
		if !retry.Sleep(ctx, minBackoff) {
			return nil
		}
	}
}

// next waits for a message, then collects more for up to BatchWait or
// until the batch is full.
func (a *Applier) next(ctx context.Context, it jetstream.MessagesContext) ([]jetstream.Msg, error) {
	for {
		first, err := it.Next(jetstream.NextContext(ctx))
		if err == nil {
			msgs := []jetstream.Msg{first}
			deadline := time.Now().Add(a.o.BatchWait)
			for len(msgs) < a.o.BatchSize {
				wait := time.Until(deadline)
				if wait <= 0 {
					break
				}
				m, err := it.Next(jetstream.NextMaxWait(wait))
				if err != nil {
					break
				}
				msgs = append(msgs, m)
			}
			return msgs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
			errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		// Missed heartbeats while NATS reconnects: the iterator re-pulls.
		a.log.Debug().Err(err).Msg("waiting for messages")
		if !retry.Sleep(ctx, minBackoff) {
			return nil, ctx.Err()
		}
	}
}

// pending is the inbound backlog: not yet delivered plus unacked.
func (a *Applier) pending(ctx context.Context) uint64 {
	c, err := a.js.Consumer(ctx, embednats.InStream(a.o.DC), ConsumerName)
	if err != nil {
		return 0
	}
	info := c.CachedInfo()
	n := info.NumPending + uint64(max(info.NumAckPending, 0))
	a.m.pending.Set(float64(n))
	return n
}
