package ship

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const (
	// DefaultLedgerBuffer is the default number of ledger updates waiting
	// to be published.
	DefaultLedgerBuffer = 8192
	// LedgerMaxAge is how long the ledger stream keeps updates.
	LedgerMaxAge = 7 * 24 * time.Hour
	// ledgerInflight bounds the ledger's own unacknowledged publishes.
	ledgerInflight = 4096
	// ledgerDrain bounds the publishing of buffered updates at shutdown.
	ledgerDrain = 2 * time.Second
)

// LedgerStream names dc's ledger stream.
func LedgerStream(dc string) string { return embednats.LedgerStream(dc) }

// LedgerSubject is where dc publishes ledger updates of kind (e.g.
// "captured").
func LedgerSubject(dc, kind string) string { return "drplane.ledger." + dc + "." + kind }

// EnsureLedgerStream ensures dc's ledger stream the way every service of
// the DC does (embednats.EnsureLedger: subjects drplane.ledger.<dc>.>, file
// storage, facts kept LedgerMaxAge; an existing stream keeps its settings).
func EnsureLedgerStream(ctx context.Context, js jetstream.JetStream, dc string) error {
	return embednats.EnsureLedger(ctx, js, dc, embednats.StreamOptions{MaxAge: LedgerMaxAge})
}

// LedgerOptions configure a Ledger.
type LedgerOptions struct {
	// NATS is the connection the ledger publishes on.
	NATS *nats.Conn
	DC   string
	// Buffer is the number of updates that may wait (default
	// DefaultLedgerBuffer).
	Buffer  int
	Metrics *Metrics
	Logger  zerolog.Logger
}

// Ledger publishes ledger updates asynchronously.
type Ledger struct {
	o   LedgerOptions
	buf chan *drplanev1.LedgerUpdate
}

// NewLedger returns a ledger publisher; Run publishes what is offered.
func NewLedger(o LedgerOptions) *Ledger {
	if o.Buffer <= 0 {
		o.Buffer = DefaultLedgerBuffer
	}
	return &Ledger{o: o, buf: make(chan *drplanev1.LedgerUpdate, o.Buffer)}
}

// Offer queues an update without blocking; a full buffer drops it.
func (l *Ledger) Offer(u *drplanev1.LedgerUpdate) {
	select {
	case l.buf <- u:
	default:
		l.o.Metrics.ledger.WithLabelValues("dropped").Inc()
	}
}

// Run publishes queued updates until ctx ends.
func (l *Ledger) Run(ctx context.Context) error {
	js, err := jetstream.New(l.o.NATS,
		jetstream.WithPublishAsyncMaxPending(ledgerInflight),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			l.o.Metrics.ledger.WithLabelValues("failed").Inc()
			l.o.Logger.Debug().Err(err).Msg("ledger update not stored")
		}),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) {
			l.o.Metrics.ledger.WithLabelValues("published").Inc()
		}),
	)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			l.drain(js)
			return nil
		case u := <-l.buf:
			l.publish(js, u)
		}
	}
}

// drain publishes what is still buffered at shutdown and waits for the
// PubAcks, at most ledgerDrain in all.
func (l *Ledger) drain(js jetstream.JetStream) {
	deadline := time.After(ledgerDrain)
buffered:
	for {
		select {
		case u := <-l.buf:
			l.publish(js, u)
		case <-deadline:
			return
		default:
			break buffered
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-deadline:
	}
}

func (l *Ledger) publish(js jetstream.JetStream, u *drplanev1.LedgerUpdate) {
	data, err := proto.Marshal(u)
	if err != nil {
		l.o.Metrics.ledger.WithLabelValues("failed").Inc()
		return
	}
	kind := strings.ToLower(strings.TrimPrefix(u.Kind.String(), "KIND_"))
	msg := &nats.Msg{
		Subject: LedgerSubject(l.o.DC, kind),
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{MsgID(u.OriginDc, u.RequestId) + ":" + kind}},
	}
	if _, err := js.PublishMsgAsync(msg); err != nil {
		l.o.Metrics.ledger.WithLabelValues("failed").Inc()
		l.o.Logger.Debug().Err(err).Msg("ledger update not published")
	}
}
