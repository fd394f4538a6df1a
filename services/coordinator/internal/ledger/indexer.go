package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// fact is one decoded ledger fact and when it happened.
type fact struct {
	u  *drplanev1.LedgerUpdate
	at time.Time
}

// follow indexes dc's ledger stream until ctx ends, reconnecting with
// backoff whenever the DC, its stream or the store is unreachable.
func (l *Ledger) follow(ctx context.Context, dc string) {
	log := l.o.Logger.With().Str("ledger_dc", dc).Logger()
	b := l.backoff()
	failing := false
	for ctx.Err() == nil {
		progressed, err := l.consume(ctx, dc)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			b.Reset()
			failing = false
		}
		// The first failure of a run is a warning; while the DC stays
		// unreachable, the retries are logged at debug level only.
		ev := log.Debug()
		if !failing {
			ev = log.Warn()
		}
		ev.Err(err).Dur("retry_in", b.Next()).Msg("ledger stream not readable; retrying")
		failing = true
		b.Wait(ctx)
	}
}

// consume creates (or finds) this coordinator's durable consumer on dc's
// ledger stream and indexes what it delivers until ctx ends or something
// fails. progressed reports whether it got as far as reading the stream.
func (l *Ledger) consume(ctx context.Context, dc string) (progressed bool, err error) {
	js, err := jetstream.NewWithDomain(l.o.NATS, dc)
	if err != nil {
		return false, fmt.Errorf("ledger: JetStream domain %s: %w", dc, err)
	}
	cctx, cancel := context.WithTimeout(ctx, consumerTimeout)
	cons, err := js.CreateOrUpdateConsumer(cctx, embednats.LedgerStream(dc), jetstream.ConsumerConfig{
		Durable:           l.consumerName(),
		Description:       "ledger indexer of coordinator " + l.o.ID,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           l.o.AckWait,
		MaxAckPending:     -1,
		InactiveThreshold: consumerInactive,
	})
	cancel()
	if err != nil {
		l.m.errors.WithLabelValues(stageConsumer).Inc()
		return false, fmt.Errorf("ledger: consumer on %s: %w", embednats.LedgerStream(dc), err)
	}
	l.o.Logger.Info().Str("ledger_dc", dc).Str("consumer", l.consumerName()).Msg("indexing the ledger stream")
	for ctx.Err() == nil {
		msgs, err := l.fetch(ctx, cons)
		if err != nil {
			l.m.errors.WithLabelValues(stageFetch).Inc()
			return true, err
		}
		if len(msgs) == 0 {
			continue
		}
		facts := l.decode(msgs)
		if err := l.indexRetrying(ctx, dc, facts); err != nil {
			return true, nil // ctx ended
		}
		last := msgs[len(msgs)-1]
		if meta, err := last.Metadata(); err == nil {
			l.m.indexLag.WithLabelValues(dc).Set(max(0, l.o.Now().Sub(meta.Timestamp).Seconds()))
			l.m.pending.WithLabelValues(dc).Set(float64(meta.NumPending))
		}
		// The consumer acks all up to the last message at once.
		if err := last.Ack(); err != nil {
			l.m.errors.WithLabelValues(stageAck).Inc()
			return true, fmt.Errorf("ledger: ack %s: %w", embednats.LedgerStream(dc), err)
		}
	}
	return true, nil
}

// fetch waits up to FetchWait for a batch of facts.
func (l *Ledger) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, l.o.FetchWait)
	defer cancel()
	batch, err := cons.Fetch(l.o.BatchSize, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && ctx.Err() == nil && len(msgs) == 0 &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return msgs, nil
}

// decode turns messages into facts, skipping (and counting) those that are
// not LedgerUpdates about a named request.
func (l *Ledger) decode(msgs []jetstream.Msg) []fact {
	out := make([]fact, 0, len(msgs))
	for _, m := range msgs {
		u := &drplanev1.LedgerUpdate{}
		err := proto.Unmarshal(m.Data(), u)
		switch {
		case err != nil:
		case !topology.ValidName(u.GetOriginDc()) || u.GetRequestId() == "":
			err = fmt.Errorf("no origin DC or request id (origin %q, request %q)", u.GetOriginDc(), u.GetRequestId())
		case !knownKind(u.GetKind()):
			err = fmt.Errorf("unknown fact kind %v", u.GetKind())
		}
		if err != nil {
			l.fail(stageDecode, fmt.Errorf("ledger fact on %s: %w", m.Subject(), err), "skipping a ledger fact")
			continue
		}
		at := u.GetAt().AsTime()
		if u.At == nil {
			if meta, merr := m.Metadata(); merr == nil {
				at = meta.Timestamp
			}
		}
		out = append(out, fact{u: u, at: at})
	}
	return out
}

// indexRetrying indexes facts, retrying with backoff while the store is
// unavailable; the error is the context's.
func (l *Ledger) indexRetrying(ctx context.Context, dc string, facts []fact) error {
	b := l.backoff()
	for {
		err := l.index(ctx, facts)
		if err == nil {
			for _, f := range facts {
				l.m.facts.WithLabelValues(dc, kindName(f.u.GetKind())).Inc()
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.fail(stageBulk, err, "ledger facts not indexed; retrying")
		b.Wait(ctx)
	}
}

// index folds facts into their documents: each document is read, updated
// with all its facts of the batch, re-derived and written back in one bulk
// call. Documents the store rejects are logged and skipped.
func (l *Ledger) index(ctx context.Context, facts []fact) error {
	if len(facts) == 0 {
		return nil
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	docs := map[string]*Document{}
	var order []string
	for _, f := range facts {
		id := DocID(f.u.GetOriginDc(), f.u.GetRequestId())
		d, ok := docs[id]
		if !ok {
			var err error
			if d, err = l.load(ctx, f.u.GetOriginDc(), f.u.GetRequestId()); err != nil {
				return err
			}
			docs[id] = d
			order = append(order, id)
		}
		d.apply(f.u, f.at)
	}
	now := l.o.Now()
	ops := make([]docstore.Op, 0, len(order))
	for _, id := range order {
		d := docs[id]
		d.derive(now)
		op, err := d.op()
		if err != nil {
			l.fail(stageRejected, err, "ledger document not encodable; skipped")
			continue
		}
		ops = append(ops, op)
	}
	return l.write(ctx, ops)
}

// load returns the stored document of a request, or a new one.
func (l *Ledger) load(ctx context.Context, origin, requestID string) (*Document, error) {
	raw, err := l.o.Docs.Get(ctx, l.o.Config.Index, DocID(origin, requestID))
	switch {
	case errors.Is(err, docstore.ErrNotFound):
		return newDocument(origin, requestID), nil
	case err != nil:
		l.m.errors.WithLabelValues(stageRead).Inc()
		return nil, fmt.Errorf("ledger: read %s: %w", DocID(origin, requestID), err)
	}
	d, err := decodeDocument(raw)
	if err != nil {
		// An unreadable document is rebuilt from the facts that follow.
		l.fail(stageDecode, err, "unreadable ledger document; starting it again")
		return newDocument(origin, requestID), nil
	}
	d.ID, d.OriginDC, d.RequestID = DocID(origin, requestID), origin, requestID
	return d, nil
}

// write bulk-writes ops; rejected documents are logged and skipped, any
// other failure is returned.
func (l *Ledger) write(ctx context.Context, ops []docstore.Op) error {
	if len(ops) == 0 {
		return nil
	}
	res, err := l.o.Docs.Bulk(ctx, l.o.Config.Index, ops)
	if err != nil {
		return fmt.Errorf("ledger: write %d documents: %w", len(ops), err)
	}
	var retry error
	for _, it := range res.Items {
		switch {
		case it.Err == nil:
		case errors.Is(it.Err, docstore.ErrRejected):
			l.fail(stageRejected, it.Err, "ledger document rejected by the index; skipped")
		default:
			retry = it.Err
		}
	}
	if retry != nil {
		return fmt.Errorf("ledger: write documents: %w", retry)
	}
	return nil
}

// kindName is a fact kind's label: "captured", "applied", ….
func kindName(k drplanev1.LedgerUpdate_Kind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_"))
}

// knownKind reports whether the ledger folds in facts of kind k.
func knownKind(k drplanev1.LedgerUpdate_Kind) bool {
	switch k {
	case drplanev1.LedgerUpdate_KIND_CAPTURED, drplanev1.LedgerUpdate_KIND_APPLIED,
		drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, drplanev1.LedgerUpdate_KIND_RETRIED:
		return true
	}
	return false
}
