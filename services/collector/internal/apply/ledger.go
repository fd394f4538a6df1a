package apply

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// ledgerDrainTimeout bounds the flush of buffered facts at shutdown.
const ledgerDrainTimeout = time.Second

// ledger publishes LedgerUpdate facts to the DC's ledger stream from its
// own goroutine. offer never blocks: a fact that does not fit the buffer is
// dropped and counted (the ledger's reconciler finds the request again).
type ledger struct {
	js  jetstream.JetStream
	dc  string
	ch  chan *drplanev1.LedgerUpdate
	m   *metrics
	log zerolog.Logger
}

func newLedger(nc *nats.Conn, dc string, buffer int, m *metrics, log zerolog.Logger) (*ledger, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, msg *nats.Msg, err error) {
			m.ledgerErrors.Inc()
			log.Debug().Err(err).Str("subject", msg.Subject).Msg("ledger fact not stored")
		}))
	if err != nil {
		return nil, fmt.Errorf("%w: ledger JetStream context: %w", ErrOptions, err)
	}
	return &ledger{js: js, dc: dc, ch: make(chan *drplanev1.LedgerUpdate, buffer), m: m, log: log}, nil
}

// offer queues u without blocking.
func (l *ledger) offer(u *drplanev1.LedgerUpdate) {
	select {
	case l.ch <- u:
	default:
		l.m.ledgerDrops.Inc()
	}
}

// run publishes queued facts until ctx ends, then flushes what is queued
// within ledgerDrainTimeout.
func (l *ledger) run(ctx context.Context) error {
	for {
		select {
		case u := <-l.ch:
			l.publish(u)
		case <-ctx.Done():
			l.drain()
			return nil
		}
	}
}

func (l *ledger) drain() {
	for len(l.ch) > 0 {
		l.publish(<-l.ch)
	}
	select {
	case <-l.js.PublishAsyncComplete():
	case <-time.After(ledgerDrainTimeout):
		l.log.Warn().Int("pending", l.js.PublishAsyncPending()).Msg("ledger facts still unconfirmed at shutdown")
	}
}

// ledgerSuffix names the subject token of a fact's kind.
func ledgerSuffix(k drplanev1.LedgerUpdate_Kind) string {
	switch k {
	case drplanev1.LedgerUpdate_KIND_APPLIED:
		return "applied"
	case drplanev1.LedgerUpdate_KIND_DEAD_LETTERED:
		return "dead_lettered"
	case drplanev1.LedgerUpdate_KIND_CAPTURED:
		return "captured"
	case drplanev1.LedgerUpdate_KIND_RETRIED:
		return "retried"
	}
	return "unknown"
}

func (l *ledger) publish(u *drplanev1.LedgerUpdate) {
	data, err := proto.Marshal(u)
	if err != nil {
		l.m.ledgerErrors.Inc()
		return
	}
	suffix := ledgerSuffix(u.GetKind())
	msg := nats.NewMsg(embednats.LedgerSubject(l.dc) + "." + suffix)
	msg.Data = data
	// The same fact reported twice (a redelivered request) is stored once
	// within the stream's dedup window. A dead letter can recur after an
	// operator's retry, so its time is part of its id.
	id := fmt.Sprintf("%s:%s:%s:%s", u.GetOriginDc(), u.GetRequestId(), suffix, u.GetDc())
	if u.GetKind() == drplanev1.LedgerUpdate_KIND_DEAD_LETTERED {
		id += ":" + strconv.FormatInt(u.GetAt().AsTime().UnixNano(), 10)
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := l.js.PublishMsgAsync(msg); err != nil {
		l.m.ledgerErrors.Inc()
		l.log.Debug().Err(err).Msg("ledger publish")
	}
}
