package reship

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/reship/internal/capture"
	"github.com/drplane/drplane/services/reship/internal/durable"
	"github.com/drplane/drplane/services/reship/internal/route"
	"github.com/drplane/drplane/services/reship/internal/ship"
)

// Errors of the engine.
var (
	// ErrNotStreaming is the readiness error while no binlog stream runs.
	ErrNotStreaming = errors.New("reship: binlog stream not running")
	// ErrOptions means the engine was given incomplete options.
	ErrOptions = errors.New("reship: bad options")
)

const (
	// drainTimeout bounds the wait for the PubAcks of a session that ended.
	drainTimeout = 10 * time.Second
	// flushTimeout bounds the last checkpoint write at shutdown.
	flushTimeout = 5 * time.Second
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
	// healthySession is how long a session must have run for the restart
	// backoff to start over.
	healthySession = 10 * time.Second
	// durableWarnAfter is how long a transaction waits to be durable in
	// the DC before a warning is logged.
	durableWarnAfter = 5 * time.Second
	// heldQueue bounds the transactions read and waiting to be durable.
	heldQueue = 4096
)

// Restart reasons of drplane_reship_syncer_restarts_total.
const (
	reasonMaster  = "master_change"
	reasonRewind  = "rewind"
	reasonStream  = "stream_error"
	reasonPublish = "publish_error"
	reasonOther   = "error"
)

// Options are what an Engine runs on.
type Options struct {
	DC, Cluster string
	Store       *state.Store
	// NATS is the DC's NATS connection for stream management, the ledger
	// and the republish hook; Publish is a second connection, without a
	// reconnect buffer, that carries the events.
	NATS, Publish *nats.Conn
	// User (REPLICATION SLAVE, SLAVE MONITOR) reads the binlog and the
	// replicas' received positions.
	User, Password string
	ServerID       uint32
	// Start is StartCurrent or StartEarliest.
	Start              string
	Window             int
	CheckpointInterval time.Duration
	PublishTimeout     time.Duration
	LedgerBuffer       int
	Outbound           embednats.StreamOptions
	Registry           prometheus.Registerer
	Logger             zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Heartbeat and ReadTimeout of the binlog stream (0: capture defaults).
	Heartbeat, ReadTimeout time.Duration
	// shipUndurable ships every transaction as soon as it is read, durable
	// or not: only the benchmark that measures what the gate adds sets it.
	shipUndurable bool
}

// Engine is reship: it follows the DC's master, captures its binlog, ships
// the events and keeps the checkpoint.
type Engine struct {
	o           Options
	metrics     *metrics
	shipMetrics *ship.Metrics
	follower    *capture.Follower
	router      *route.Router
	capturer    *capture.Capturer
	cp          *ship.Checkpointer
	ledger      *ship.Ledger
	republisher *ship.Republisher
	pubJS       jetstream.JetStream
	js          jetstream.JetStream
	streaming   atomic.Bool
	// streamsReady is closed once the streams were set up.
	streamsReady chan struct{}
}

// NewEngine wires an engine.
func NewEngine(o Options) (*Engine, error) {
	if o.Store == nil || o.NATS == nil || o.Publish == nil || o.Registry == nil || o.DC == "" || o.Cluster == "" {
		return nil, fmt.Errorf("%w: Store, NATS, Publish, Registry, DC and Cluster are required", ErrOptions)
	}
	if o.Start != StartCurrent && o.Start != StartEarliest {
		return nil, fmt.Errorf("%w: start %q", ErrOptions, o.Start)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Window <= 0 {
		o.Window = ship.DefaultWindow
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.ServerID == 0 {
		o.ServerID = DefaultServerID(o.DC, o.Cluster)
	}
	e := &Engine{
		o: o, metrics: newMetrics(o.Registry), shipMetrics: ship.NewMetrics(o.Registry, o.Now),
		streamsReady: make(chan struct{}),
	}
	e.follower = capture.NewFollower(o.Store, o.DC, o.Cluster, o.Logger)
	e.router = route.New(route.Options{Store: o.Store, DC: o.DC, Cluster: o.Cluster, Logger: o.Logger})
	e.capturer = capture.New(capture.Options{
		ServerID: o.ServerID, User: o.User, Password: o.Password, Filter: e.router.Wanted,
		Heartbeat: o.Heartbeat, ReadTimeout: o.ReadTimeout, Logger: o.Logger, Now: o.Now,
	})
	e.cp = ship.NewCheckpointer(ship.CheckpointOptions{
		Store: o.Store, DC: o.DC, Cluster: o.Cluster, Interval: o.CheckpointInterval,
		Metrics: e.shipMetrics, Logger: o.Logger, Now: o.Now,
	})
	e.ledger = ship.NewLedger(ship.LedgerOptions{NATS: o.NATS, DC: o.DC, Buffer: o.LedgerBuffer, Metrics: e.shipMetrics, Logger: o.Logger})
	var err error
	if e.republisher, err = ship.NewRepublisher(ship.RepublisherOptions{NATS: o.NATS, DC: o.DC, Metrics: e.shipMetrics, Logger: o.Logger, Now: o.Now}); err != nil {
		return nil, err
	}
	if e.js, err = jetstream.New(o.NATS); err != nil {
		return nil, fmt.Errorf("reship: jetstream: %w", err)
	}
	if e.pubJS, err = jetstream.New(o.Publish,
		jetstream.WithPublishAsyncMaxPending(o.Window),
		jetstream.WithPublishAsyncTimeout(o.PublishTimeout)); err != nil {
		return nil, fmt.Errorf("reship: jetstream: %w", err)
	}
	return e, nil
}

// Check is the readiness check of the binlog stream.
func (e *Engine) Check(context.Context) error {
	if !e.streaming.Load() || !e.capturer.Streaming() {
		return ErrNotStreaming
	}
	return nil
}

// Run runs reship until ctx ends; the checkpoint is written one last time
// before it returns.
func (e *Engine) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.follower.Run(gctx) })
	g.Go(func() error { return e.router.Run(gctx) })
	g.Go(func() error { return e.ledger.Run(gctx) })
	g.Go(func() error { return e.republisher.Run(gctx) })
	g.Go(func() error { return e.keepStreams(gctx) })
	// The checkpointer outlives gctx: it stops only once capture has, so
	// that no periodic write races the last one below and stores an older
	// position after it.
	cpCtx, stopCP := context.WithCancel(context.WithoutCancel(gctx))
	defer stopCP()
	cpDone := make(chan struct{})
	g.Go(func() error {
		defer close(cpDone)
		return e.cp.Run(cpCtx)
	})
	g.Go(func() error {
		e.capture(gctx)
		stopCP()
		<-cpDone
		fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		if ferr := e.cp.Flush(fctx); ferr != nil {
			e.o.Logger.Error().Err(ferr).Msg("last checkpoint write failed")
		}
		if cp, ok := e.cp.Current(); ok {
			e.o.Logger.Info().Str("position", cp.Position).Msg("checkpoint at shutdown")
		}
		return nil
	})
	return g.Wait()
}

// capture waits for the streams (and so the topology), then runs capture
// sessions, one per master and stream, until ctx ends.
func (e *Engine) capture(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-e.streamsReady:
	}
	if e.loadCheckpoint(ctx) != nil {
		return
	}
	b := retry.New(backoffMin, backoffMax)
	for ctx.Err() == nil {
		rec, ok, changed := e.follower.Current()
		if !ok {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		started := e.o.Now()
		reason, err := e.session(ctx, rec, changed)
		if ctx.Err() != nil {
			return
		}
		e.metrics.restarts.WithLabelValues(reason).Inc()
		switch reason {
		case reasonMaster:
			e.o.Logger.Info().Msg("master changed: restarting capture from the checkpoint")
			b.Reset()
			continue
		case reasonRewind:
			b.Reset()
			continue
		}
		if e.o.Now().Sub(started) > healthySession {
			b.Reset()
		}
		e.o.Logger.Warn().Err(err).Str("reason", reason).Str("master", rec.Instance).Dur("retry_in", b.Next()).
			Msg("capture stopped; restarting from the checkpoint")
		b.WaitOr(ctx, changed)
	}
}

// loadCheckpoint reads the stored checkpoint, retrying until it works or
// ctx ends.
func (e *Engine) loadCheckpoint(ctx context.Context) error {
	b := retry.New(backoffMin, backoffMax)
	for {
		cp, ok, err := e.cp.Load(ctx)
		if err == nil {
			if ok {
				e.o.Logger.Info().Str("position", cp.Position).Str("gtid", cp.GTID).Msg("resuming from the checkpoint")
			}
			return nil
		}
		e.o.Logger.Warn().Err(err).Dur("retry_in", b.Next()).Msg("cannot read the checkpoint")
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// keepStreams ensures the streams once the topology is known (retrying
// until it works), closes streamsReady, then ensures them again whenever
// the set of peers changes, until ctx ends.
func (e *Engine) keepStreams(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-e.router.Ready():
	}
	peers, changed := e.router.Peers()
	if e.ensureStreams(ctx, peers) != nil {
		return nil
	}
	close(e.streamsReady)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		var now []string
		now, changed = e.router.Peers()
		if slices.Equal(now, peers) {
			continue
		}
		if e.ensureStreams(ctx, now) == nil {
			peers = now
		}
	}
}

func (e *Engine) ensureStreams(ctx context.Context, peers []string) error {
	b := retry.New(backoffMin, backoffMax)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ship.EnsureStreams(cctx, e.js, e.o.DC, peers, e.o.Outbound)
		cancel()
		if err == nil {
			e.o.Logger.Info().Strs("peers", peers).Str("stream", embednats.OutStream(e.o.DC)).Msg("outbound and ledger streams ready")
			return nil
		}
		e.o.Logger.Warn().Err(err).Dur("retry_in", b.Next()).Msg("cannot set up the outbound stream")
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// session captures from one master until the stream breaks, a publish
// fails, the master changes or ctx ends. It returns the restart reason.
func (e *Engine) session(ctx context.Context, rec state.MasterRecord, changed <-chan struct{}) (string, error) {
	from, err := e.startPosition(ctx, rec)
	if err != nil {
		return reasonStream, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	masterChanged := atomic.Bool{}
	go func() {
		select {
		case <-changed:
			masterChanged.Store(true)
			cancel()
		case <-sctx.Done():
		}
	}()
	// The master's server_id: the replicas that vouch for a transaction
	// must be replicating from this very server.
	_, _, masterID, err := e.capturer.Positions(sctx, rec.Addr)
	if err != nil {
		return reasonStream, err
	}
	gate := e.newGate(rec, masterID)
	gateDone := make(chan struct{})
	go func() {
		defer close(gateDone)
		_ = gate.Run(sctx)
	}()
	defer func() {
		cancel()
		<-gateDone
	}()
	pipe := ship.NewPipeline(ship.PipelineOptions{
		JS: e.pubJS, DC: e.o.DC, Window: e.o.Window, Checkpoint: e.cp, Ledger: e.ledger,
		Metrics: e.shipMetrics, Logger: e.o.Logger, Now: e.o.Now,
	})
	// Transactions wait to be durable in a stage of their own, so that the
	// stream goes on being read meanwhile: a stream that breaks ends the
	// session (and the wait) at once, and a master restarted in place is
	// read again from the checkpoint rather than vouched for by the
	// replicas' positions past a transaction its crash recovery truncated.
	queue := make(chan *capture.Txn, heldQueue)
	var stageErr error
	stageDone := make(chan struct{})
	go func() {
		defer close(stageDone)
		for {
			select {
			case <-sctx.Done():
				return
			case txn := <-queue:
				if err := e.handle(sctx, rec, gate, pipe, txn); err != nil {
					if sctx.Err() == nil {
						stageErr = err
					}
					cancel()
					return
				}
			}
		}
	}()
	log := e.o.Logger.With().Str("master", rec.Instance).Str("addr", rec.Addr).Logger()
	log.Info().Str("from", from).Uint32("server_id", e.o.ServerID).Uint32("master_server_id", masterID).Msg("binlog capture starting")
	e.streaming.Store(true)
	err = e.capturer.Stream(sctx, rec.Addr, from, func(txn *capture.Txn) error {
		select {
		case queue <- txn:
			return nil
		case <-sctx.Done():
			return nil
		}
	})
	e.streaming.Store(false)
	cancel()
	<-stageDone
	if err == nil {
		err = stageErr
	}
	pipe.Close(drainTimeout)
	switch {
	case ctx.Err() != nil:
		return "", nil
	case masterChanged.Load():
		return reasonMaster, nil
	case pipe.Err() != nil:
		return reasonPublish, pipe.Err()
	case errors.Is(err, capture.ErrStream) && capture.ErrorCode(err) == errNotInBinlog:
		switch rerr := e.rewind(ctx, rec); {
		case rerr == nil:
			return reasonRewind, nil
		case errors.Is(rerr, ErrNoRewind):
			return reasonStream, err
		default:
			return reasonStream, fmt.Errorf("%w; rewind: %w", err, rerr)
		}
	case errors.Is(err, capture.ErrStream):
		return reasonStream, err
	case err == nil:
		return reasonOther, ErrNotStreaming
	}
	return reasonOther, err
}

// startPosition is the checkpoint, or for a first start the position the
// configuration asks for, stored at once so a restart cannot skip past
// transactions committed meanwhile.
func (e *Engine) startPosition(ctx context.Context, rec state.MasterRecord) (string, error) {
	if cp, ok := e.cp.Current(); ok {
		return cp.Position, nil
	}
	pos := ""
	if e.o.Start == StartCurrent {
		var err error
		if pos, err = e.capturer.CurrentPosition(ctx, rec.Addr); err != nil {
			return "", err
		}
	}
	e.cp.Advance(ship.Checkpoint{Position: pos, Master: rec.Instance})
	if err := e.cp.Flush(ctx); err != nil {
		return "", err
	}
	e.o.Logger.Info().Str("start", e.o.Start).Str("position", pos).Msg("no checkpoint: starting position stored")
	return pos, nil
}

// newGate returns the durability gate of a session on rec's master: the
// cluster's other instances of the topology are its replicas.
func (e *Engine) newGate(rec state.MasterRecord, masterID uint32) *durable.Gate {
	return durable.New(durable.Options{
		Master: rec.Addr, MasterID: masterID, User: e.o.User, Password: e.o.Password, Logger: e.o.Logger, Now: e.o.Now,
		Replicas: func() []string {
			var out []string
			for _, in := range e.router.Instances() {
				if in.Name != rec.Instance {
					out = append(out, in.Addr)
				}
			}
			return out
		},
		Observed: func(addr string, err error) {
			if err != nil {
				e.metrics.gateErrors.WithLabelValues(addr).Inc()
			}
		},
	})
}

// awaitDurable holds txn until the gate finds it durable in the DC.
func (e *Engine) awaitDurable(ctx context.Context, gate *durable.Gate, txn *capture.Txn) error {
	if e.o.shipUndurable {
		return nil
	}
	if gate.Durable(txn.GTID, txn.CapturedAt) {
		e.metrics.durableWait.Observe(e.o.Now().Sub(txn.CapturedAt).Seconds())
		return nil
	}
	e.metrics.held.Set(1)
	defer e.metrics.held.Set(0)
	warn := time.AfterFunc(durableWarnAfter, func() {
		e.o.Logger.Warn().Str("gtid", txn.GTID).Dur("held", durableWarnAfter).
			Msg("transaction not shipped yet: no replica of the DC has received it and the master waits for a semi-sync acknowledgement")
	})
	defer warn.Stop()
	if err := gate.Wait(ctx, txn.GTID, txn.CapturedAt); err != nil {
		return err
	}
	e.metrics.durableWait.Observe(e.o.Now().Sub(txn.CapturedAt).Seconds())
	return nil
}

// handle holds one transaction until it is durable in the DC, routes it
// and hands its events to the pipeline.
func (e *Engine) handle(ctx context.Context, rec state.MasterRecord, gate *durable.Gate, pipe *ship.Pipeline, txn *capture.Txn) error {
	if err := e.awaitDurable(ctx, gate, txn); err != nil {
		return err
	}
	m := e.metrics
	m.txns.Inc()
	m.lag.Observe(txn.CapturedAt.Sub(txn.CommitTime).Seconds())
	m.lastCommit.Set(float64(txn.CommitTime.Unix()))
	res := route.Result{}
	if len(txn.Rows) > 0 {
		var err error
		if res, err = e.router.Split(ctx, txn); err != nil {
			return err
		}
	}
	res.Unmapped += txn.Unmapped
	if err := e.recordDiverged(ctx, res); err != nil {
		return err
	}
	rows := 0
	for _, ev := range res.Events {
		rows += len(ev.Rows)
	}
	m.rows.Add(float64(rows))
	m.events.Add(float64(len(res.Events)))
	if res.Unmapped > 0 {
		m.skippedRows.WithLabelValues("unmapped").Add(float64(res.Unmapped))
	}
	if res.BadKey > 0 {
		m.skippedRows.WithLabelValues("bad_key").Add(float64(res.BadKey))
	}
	switch {
	case txn.Skip != capture.SkipNone:
		m.skippedTxns.WithLabelValues(string(txn.Skip)).Inc()
	case len(res.Events) == 0:
		m.skippedTxns.WithLabelValues("unmapped").Inc()
	}
	peers, _ := e.router.Peers()
	return pipe.Submit(ctx, ship.Txn{
		GTID: txn.GTID, Position: txn.Position, CommitTime: txn.CommitTime, CapturedAt: txn.CapturedAt, Master: rec.Instance,
	}, res.Events, peers)
}

// recordDiverged records the events Split refused as divergence, each once
// with its audit event; it fails (and the transaction is captured again)
// only when etcd does not answer before ctx ends.
func (e *Engine) recordDiverged(ctx context.Context, res route.Result) error {
	for i, ev := range res.Diverged {
		data, _ := proto.Marshal(ev)
		ent := divergence.Entry{
			Origin: ev.GetOriginDc(), RequestID: ev.GetRequestId(), GTID: ev.GetGtid(), Keyspace: ev.GetKeyspace(),
			Shard: ev.GetShard(), Owner: res.Owners[i], FenceWatermark: res.Fences[i].Watermark,
			FenceOperation: res.Fences[i].OperationID, DetectedBy: "reship@" + e.o.DC, DetectedAt: e.o.Now().UTC(),
			CommitTime: ev.GetCommitTime().AsTime(), Rows: len(ev.GetRows()), Change: data,
		}
		for {
			created, err := divergence.Record(ctx, e.o.Store, ent)
			if err == nil {
				e.metrics.diverged.Inc()
				if created {
					e.o.Logger.Warn().Str("request", ent.RequestID).Str("keyspace", ent.Keyspace).Int32("shard", ent.Shard).
						Str("owner", ent.Owner).Str("fence", ent.FenceWatermark).
						Msg("not shipping a change captured after this DC handed the shard off: divergence recorded")
				}
				break
			}
			e.o.Logger.Warn().Err(err).Str("request", ent.RequestID).Msg("divergence not recorded yet; retrying")
			if !retry.Sleep(ctx, 250*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}
