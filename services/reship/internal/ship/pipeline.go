package ship

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// DefaultWindow is the default number of publishes in flight.
const DefaultWindow = 1024

// ErrPublish means a publish to the outbound stream failed; the pipeline
// takes no more events.
var ErrPublish = errors.New("ship: publish to the outbound stream failed")

// Subject is where an event of keyspace and shard captured in dc is
// published.
func Subject(dc, keyspace string, shard int32) string {
	return fmt.Sprintf("%s.%s.%d", embednats.OutSubject(dc), keyspace, shard)
}

// MsgID is the Nats-Msg-Id of a request: "<origin-dc>:<request-id>".
func MsgID(origin, requestID string) string { return origin + ":" + requestID }

// Txn is what the pipeline needs of one captured transaction.
type Txn struct {
	GTID       string
	Position   string
	CommitTime time.Time
	CapturedAt time.Time
	// Master is the instance it was read from (recorded in the checkpoint).
	Master string
}

// PipelineOptions configure a Pipeline.
type PipelineOptions struct {
	// JS publishes, on a connection of its own without a reconnect buffer
	// (see the package documentation).
	JS jetstream.JetStream
	DC string
	// Window is the maximum number of publishes in flight (default
	// DefaultWindow).
	Window     int
	Checkpoint *Checkpointer
	// Ledger receives a CAPTURED update per acknowledged event; nil sends
	// none.
	Ledger  *Ledger
	Metrics *Metrics
	Logger  zerolog.Logger
	Now     func() time.Time
}

// entry is one published event, or a transaction without events, in
// publishing order.
type entry struct {
	fut     jetstream.PubAckFuture // nil: nothing published
	ev      *drplanev1.ChangeEvent
	targets []string
	sent    time.Time
	// txn is set on the last entry of a transaction: once it is resolved,
	// the transaction is complete.
	txn *Txn
}

// Pipeline publishes the events of one capture session in order.
type Pipeline struct {
	o     PipelineOptions
	slots chan struct{}
	fifo  chan entry
	done  chan struct{}
	abort context.CancelFunc

	mu      sync.Mutex
	err     error
	pending []time.Time // captured-at of transactions not complete yet
}

// NewPipeline starts a pipeline; Close it when the session ends.
func NewPipeline(o PipelineOptions) *Pipeline {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{
		o: o, slots: make(chan struct{}, o.Window), fifo: make(chan entry, o.Window),
		done: make(chan struct{}), abort: cancel,
	}
	go p.ack(ctx)
	return p
}

// Err returns the first publish failure, if any.
func (p *Pipeline) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *Pipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = fmt.Errorf("%w: %w", ErrPublish, err)
		p.o.Metrics.failed.Inc()
	}
}

// Submit publishes the events of one transaction (none for a transaction
// that ships nothing: it still moves the checkpoint in turn), blocking while
// the window is full. targets are the DCs the events are for. It fails
// when ctx ends or after a publish failed. Only one goroutine may submit.
func (p *Pipeline) Submit(ctx context.Context, txn Txn, events []*drplanev1.ChangeEvent, targets []string) error {
	if err := p.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.pending = append(p.pending, txn.CapturedAt)
	if len(p.pending) == 1 {
		p.o.Metrics.oldest.Store(txn.CapturedAt.UnixNano())
	}
	p.mu.Unlock()
	t := &txn
	if len(events) == 0 {
		return p.enqueue(ctx, entry{txn: t})
	}
	for i, ev := range events {
		data, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("ship: encode %s: %w", ev.RequestId, err)
		}
		msg := &nats.Msg{
			Subject: Subject(p.o.DC, ev.Keyspace, ev.Shard),
			Data:    data,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{MsgID(ev.OriginDc, ev.RequestId)}},
		}
		if err := p.acquire(ctx); err != nil {
			return err
		}
		if err := p.Err(); err != nil {
			<-p.slots
			return err
		}
		sent := p.o.Now()
		fut, err := p.o.JS.PublishMsgAsync(msg)
		if err != nil {
			<-p.slots
			p.fail(err)
			return p.Err()
		}
		p.o.Metrics.inflight.Inc()
		e := entry{fut: fut, ev: ev, targets: targets, sent: sent}
		if i == len(events)-1 {
			e.txn = t
		}
		p.fifo <- e
	}
	return nil
}

// enqueue queues an entry that published nothing.
func (p *Pipeline) enqueue(ctx context.Context, e entry) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	p.fifo <- e
	return nil
}

func (p *Pipeline) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ack resolves entries in publishing order and moves the checkpoint.
func (p *Pipeline) ack(ctx context.Context) {
	defer close(p.done)
	failed := false
	for e := range p.fifo {
		ok := true
		if e.fut != nil {
			ok = p.resolve(ctx, e, failed)
			p.o.Metrics.inflight.Dec()
		}
		<-p.slots
		if !ok && !failed {
			failed = true
		}
		if e.txn == nil || failed {
			continue
		}
		p.o.Checkpoint.Advance(Checkpoint{
			Position: e.txn.Position, GTID: e.txn.GTID, CommitTime: e.txn.CommitTime, Master: e.txn.Master,
		})
		p.mu.Lock()
		if len(p.pending) > 0 {
			p.pending = p.pending[1:]
		}
		if len(p.pending) > 0 {
			p.o.Metrics.oldest.Store(p.pending[0].UnixNano())
		} else {
			p.o.Metrics.oldest.Store(0)
		}
		p.mu.Unlock()
	}
}

// resolve waits for one PubAck; it reports whether the event is stored.
// failedBefore says whether an earlier event failed.
func (p *Pipeline) resolve(ctx context.Context, e entry, failedBefore bool) bool {
	select {
	case ack := <-e.fut.Ok():
		p.o.Metrics.latency.Observe(p.o.Now().Sub(e.sent).Seconds())
		if ack.Duplicate {
			p.o.Metrics.published.WithLabelValues(resultDuplicate).Inc()
		} else {
			p.o.Metrics.published.WithLabelValues(resultStored).Inc()
			if failedBefore {
				p.o.Metrics.reordered.Inc()
				p.o.Logger.Error().Str("request_id", e.ev.RequestId).Uint64("seq", ack.Sequence).
					Msg("event stored after an earlier event failed: it precedes that event's republication")
			}
		}
		p.ledger(e, ack.Sequence)
		return true
	case err := <-e.fut.Err():
		p.fail(err)
		p.o.Logger.Warn().Err(err).Str("request_id", e.ev.RequestId).Msg("publish failed")
		return false
	case <-ctx.Done():
		p.fail(ctx.Err())
		return false
	}
}

func (p *Pipeline) ledger(e entry, seq uint64) {
	if p.o.Ledger == nil {
		return
	}
	ev := e.ev
	p.o.Ledger.Offer(&drplanev1.LedgerUpdate{
		OriginDc: ev.OriginDc, RequestId: ev.RequestId, Kind: drplanev1.LedgerUpdate_KIND_CAPTURED,
		Dc: p.o.DC, At: timestamppb.New(p.o.Now()), Keyspace: ev.Keyspace, Shard: ev.Shard, Gtid: ev.Gtid,
		Targets: e.targets, OutboundSeq: seq,
	})
}

// Close takes no more events and waits until every published event is
// resolved, at most timeout; what is unresolved then counts as failed.
// The checkpoint then covers exactly the acknowledged prefix.
func (p *Pipeline) Close(timeout time.Duration) {
	close(p.fifo)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.o.Logger.Warn().Dur("timeout", timeout).Msg("publishes still unresolved at the end of the session; treating them as failed")
		p.abort()
		<-p.done
	}
	p.abort()
	p.mu.Lock()
	p.pending = nil
	p.mu.Unlock()
	p.o.Metrics.oldest.Store(0)
}
