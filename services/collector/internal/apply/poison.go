package apply

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// AuditAction is the audit action of a dead letter.
const AuditAction = "replication.dead_letter"

const (
	maxErrorHeader = 1024
	auditAttempts  = 3
	auditTimeout   = 2 * time.Second
)

// deadLetter publishes a poison message to DLQ_<dc> (retrying until it is
// stored or ctx ends), then audits it and reports it to the ledger. It
// reports whether the message may be acked.
func (a *Applier) deadLetter(ctx context.Context, it *item) bool {
	origin, rid := it.origin(), it.requestID()
	errText := it.poison.Error()
	if len(errText) > maxErrorHeader {
		errText = errText[:maxErrorHeader]
	}
	msg := nats.NewMsg(embednats.DLQSubject(a.o.DC) + "." + origin)
	msg.Data = it.msg.Data()
	msg.Header.Set(HeaderError, errText)
	msg.Header.Set(HeaderOrigin, origin)
	msg.Header.Set(HeaderRequestID, rid)
	msg.Header.Set(HeaderSubject, it.msg.Subject())
	msg.Header.Set(HeaderStream, embednats.InStream(a.o.DC))
	msg.Header.Set(HeaderSequence, strconv.FormatUint(it.streamSeq(), 10))
	// Dead-lettering the same inbound message again (a crash before the
	// ack) is stored once within the DLQ's dedup window; the same request
	// failing again after an operator's retry arrives under a new inbound
	// sequence and is stored again.
	dlqID := fmt.Sprintf("%s:%s:%d", origin, rid, it.streamSeq())
	if rid == "" {
		dlqID = fmt.Sprintf("%s:%d", embednats.InStream(a.o.DC), it.streamSeq())
	}
	msg.Header.Set(jetstream.MsgIDHeader, dlqID)
	var ack *jetstream.PubAck
	b := retry.New(minBackoff, maxBackoff)
	for {
		var err error
		ack, err = a.js.PublishMsg(ctx, msg)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		a.log.Warn().Err(err).Msg("dead letter not stored yet; retrying")
		if !b.Wait(ctx) {
			return false
		}
	}
	now := a.o.Now()
	a.log.Error().Err(it.poison).Str("origin", origin).Str("request", rid).Uint64("dlq_seq", ack.Sequence).
		Msg("request dead-lettered")
	a.m.deadLetters.WithLabelValues(origin).Inc()
	a.prog.deadLettered(origin)
	a.led.offer(a.fact(it, drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, now, it.poison))
	a.audit(ctx, it, origin, rid, ack.Sequence, now)
	return true
}

// audit puts the dead letter's audit event into the etcd outbox. The
// message is in the DLQ already, so a failure only costs the event.
func (a *Applier) audit(ctx context.Context, it *item, origin, rid string, dlqSeq uint64, now time.Time) {
	a.auditSeq++
	ev := audit.Event{
		ID:     audit.NewID(now, "collector/"+a.o.DC+"/"+a.o.ID, a.auditSeq),
		Time:   now.UTC(),
		Actor:  "collector:" + a.o.ID,
		Action: AuditAction,
		Target: origin + ":" + rid,
		Params: map[string]string{
			"dc": a.o.DC, "origin": origin, "request_id": rid,
			"keyspace": it.ev.GetKeyspace(), "shard": strconv.Itoa(int(it.ev.GetShard())), "gtid": it.ev.GetGtid(),
			"subject": it.msg.Subject(), "stream_seq": strconv.FormatUint(it.streamSeq(), 10),
			"dlq_stream": embednats.DLQStream(a.o.DC), "dlq_seq": strconv.FormatUint(dlqSeq, 10),
		},
		Outcome: audit.OutcomeFailed,
		Error:   it.poison.Error(),
	}
	var err error
	for range auditAttempts {
		actx, cancel := context.WithTimeout(ctx, auditTimeout)
		err = a.outbox.Put(actx, ev)
		cancel()
		if err == nil {
			return
		}
	}
	a.m.auditErrors.Inc()
	a.log.Error().Err(err).Str("origin", origin).Str("request", rid).Msg("dead letter not audited")
}
