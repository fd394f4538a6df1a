package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// ActionRetry is the audit action of a reconciler round that republished
// requests.
const ActionRetry = "replication.retry"

const (
	// auditTimeout bounds the audit outbox write of a round.
	auditTimeout = 5 * time.Second
	// auditRequestIDs is how many request ids an audit event lists.
	auditRequestIDs = 20
)

// RepublishSubject is the subject of dc's reship republish hook: the
// request is a JSON list of OUT_<dc> sequences.
func RepublishSubject(dc string) string { return "drplane.reship." + dc + ".republish" }

// republishReply is the hook's answer.
type republishReply struct {
	Republished []struct {
		Seq       uint64 `json:"seq"`
		NewSeq    uint64 `json:"new_seq"`
		RequestID string `json:"request_id"`
	} `json:"republished"`
	Failed []struct {
		Seq   uint64 `json:"seq"`
		Error string `json:"error"`
	} `json:"failed"`
	Error string `json:"error"`
}

// Round is what one reconciler round did.
type Round struct {
	// Due counts the requests found due for a retry.
	Due int
	// Republished are the request ids republished; Failed those reship
	// could not republish (or all due ones when it did not answer).
	Republished, Failed []string
	// NoSequence counts due requests whose outbound sequence is unknown.
	NoSequence int
}

// reconcile runs a round every ReconcileEvery until ctx ends.
func (l *Ledger) reconcile(ctx context.Context) error {
	t := time.NewTicker(l.o.Config.ReconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := l.Reconcile(ctx); err != nil && ctx.Err() == nil {
			l.o.Logger.Warn().Err(err).Msg("reconciler round failed")
		}
	}
}

// Reconcile runs one round: it updates the backlog gauges, finds the
// requests captured in this DC more than RetryAfter ago (or retried that
// long ago) that some target has still to apply, asks the DC's reship to
// republish them from the outbound stream, records each attempt (in the
// ledger document at once, and as a RETRIED fact on the DC's ledger stream
// for the other coordinators) and audits the round.
func (l *Ledger) Reconcile(ctx context.Context) (Round, error) {
	l.m.rounds.Inc()
	l.updateBacklog(ctx)
	due, err := l.due(ctx)
	r := Round{Due: len(due)}
	if err != nil || len(due) == 0 {
		return r, err
	}
	bySeq := map[uint64][]*Document{}
	var seqs []uint64
	for _, d := range due {
		if d.OutboundSeq == 0 {
			r.NoSequence++
			l.m.retries.WithLabelValues(resultNoSequence).Inc()
			continue
		}
		if _, ok := bySeq[d.OutboundSeq]; !ok {
			seqs = append(seqs, d.OutboundSeq)
		}
		bySeq[d.OutboundSeq] = append(bySeq[d.OutboundSeq], d)
	}
	if len(seqs) == 0 {
		return r, nil
	}
	slices.Sort(seqs)
	reply, err := l.republish(ctx, seqs)
	if err != nil {
		l.m.retries.WithLabelValues(resultUnanswered).Add(float64(len(seqs)))
		return r, err
	}
	failures := map[uint64]string{}
	for _, f := range reply.Failed {
		failures[f.Seq] = f.Error
	}
	done := map[uint64]bool{}
	for _, p := range reply.Republished {
		done[p.Seq] = true
	}
	now := l.o.Now().UTC()
	var facts []fact
	var errs []string
	for _, seq := range seqs {
		for _, d := range bySeq[seq] {
			if !done[seq] {
				r.Failed = append(r.Failed, d.RequestID)
				if msg, ok := failures[seq]; ok {
					errs = append(errs, fmt.Sprintf("seq %d: %s", seq, msg))
				}
				continue
			}
			r.Republished = append(r.Republished, d.RequestID)
			facts = append(facts, fact{at: now, u: &drplanev1.LedgerUpdate{
				OriginDc: d.OriginDC, RequestId: d.RequestID, Kind: drplanev1.LedgerUpdate_KIND_RETRIED,
				Dc: l.o.DC, At: timestamppb.New(now), Keyspace: d.Keyspace, Shard: d.Shard, Gtid: d.GTID,
				OutboundSeq: seq,
			}})
		}
	}
	if reply.Error != "" {
		errs = append(errs, reply.Error)
	}
	l.m.retries.WithLabelValues(resultRepublished).Add(float64(len(r.Republished)))
	l.m.retries.WithLabelValues(resultFailed).Add(float64(len(r.Failed)))
	if err := l.index(ctx, facts); err != nil {
		l.fail(stageRecord, err, "retries not recorded in the ledger index")
	}
	l.publishFacts(ctx, facts)
	l.auditRound(ctx, r, seqs, errs, now)
	l.o.Logger.Info().Int("republished", len(r.Republished)).Int("failed", len(r.Failed)).
		Int("no_sequence", r.NoSequence).Msg("reconciler republished unapplied requests")
	return r, nil
}

// due returns the documents of this DC's requests that are due for a
// retry, checked against their stored facts (and repaired when their
// derived fields were stale).
func (l *Ledger) due(ctx context.Context) ([]*Document, error) {
	cutoff := l.o.Now().Add(-l.o.Config.RetryAfter)
	maxDone := int64(l.o.Config.MaxAttempts - 1)
	res, err := l.o.Docs.Search(ctx, l.o.Config.Index, docstore.Query{
		Text:      "_exists_:" + fieldPendingDCs,
		Terms:     map[string][]string{fieldOrigin: {l.o.DC}},
		TimeField: fieldLastAttemptAt, To: cutoff,
		Ranges: []docstore.Range{{Field: fieldAttempts, Max: &maxDone}},
		Sort:   fieldLastAttemptAt, Size: l.o.Config.MaxPerRound,
	})
	if err != nil {
		l.m.errors.WithLabelValues(stageSearch).Inc()
		return nil, fmt.Errorf("ledger: find requests due for a retry: %w", err)
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	var due []*Document
	var repairs []docstore.Op
	for _, h := range res.Hits {
		stored, err := decodeDocument(h.Doc)
		if err != nil {
			l.fail(stageDecode, err, "unreadable ledger document")
			continue
		}
		d, err := l.load(ctx, stored.OriginDC, stored.RequestID)
		if err != nil {
			return nil, err
		}
		before := d.derivedKey()
		d.derive(l.o.Now())
		if len(d.PendingDCs) > 0 && d.LastAttemptAt.Before(cutoff) && d.Attempts < l.o.Config.MaxAttempts {
			due = append(due, d)
			continue
		}
		if d.derivedKey() != before {
			if op, err := d.op(); err == nil {
				repairs = append(repairs, op)
			}
		}
	}
	if err := l.write(ctx, repairs); err != nil {
		l.fail(stageRecord, err, "stale ledger documents not repaired")
	}
	return due, nil
}

// derivedKey summarises the derived fields that decide a retry.
func (d *Document) derivedKey() string {
	return d.State + "|" + strings.Join(d.PendingDCs, ",") + "|" + strconv.Itoa(d.Attempts) + "|" +
		d.LastAttemptAt.UTC().Format(time.RFC3339Nano)
}

// republish asks the DC's reship to republish seqs.
func (l *Ledger) republish(ctx context.Context, seqs []uint64) (republishReply, error) {
	var reply republishReply
	body, err := json.Marshal(seqs)
	if err != nil {
		return reply, fmt.Errorf("ledger: encode republish request: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, l.o.RequestTimeout)
	defer cancel()
	msg, err := l.o.NATS.RequestWithContext(rctx, RepublishSubject(l.o.DC), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return reply, fmt.Errorf("ledger: no reship answers on %s: %w", RepublishSubject(l.o.DC), err)
		}
		return reply, fmt.Errorf("ledger: republish request on %s: %w", RepublishSubject(l.o.DC), err)
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return reply, fmt.Errorf("ledger: republish reply: %w", err)
	}
	return reply, nil
}

// publishFacts reports retries on this DC's ledger stream, so that every
// coordinator's index counts them. A fact that is not stored is logged:
// this coordinator's index has it already.
func (l *Ledger) publishFacts(ctx context.Context, facts []fact) {
	if len(facts) == 0 {
		return
	}
	js, err := jetstream.New(l.o.NATS)
	if err != nil {
		l.fail(stageRecord, err, "retry facts not published")
		return
	}
	for _, f := range facts {
		data, err := proto.Marshal(f.u)
		if err != nil {
			l.fail(stageRecord, err, "retry fact not encodable")
			continue
		}
		msg := nats.NewMsg(embednats.LedgerSubject(l.o.DC) + ".retried")
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, DocID(f.u.GetOriginDc(), f.u.GetRequestId())+":retried:"+
			strconv.FormatInt(f.at.UnixNano(), 10))
		pctx, cancel := context.WithTimeout(ctx, l.o.RequestTimeout)
		_, err = js.PublishMsg(pctx, msg)
		cancel()
		if err != nil {
			l.fail(stageRecord, err, "retry fact not stored in the ledger stream")
			return
		}
	}
}

// auditRound puts the round's audit event into the etcd outbox.
func (l *Ledger) auditRound(ctx context.Context, r Round, seqs []uint64, errs []string, now time.Time) {
	ids := append(slices.Clone(r.Republished), r.Failed...)
	listed := ids[:min(len(ids), auditRequestIDs)]
	params := map[string]string{
		"dc": l.o.DC, "republished": strconv.Itoa(len(r.Republished)), "failed": strconv.Itoa(len(r.Failed)),
		"request_ids": strings.Join(listed, ","), "outbound_seqs": seqRange(seqs),
	}
	if len(ids) > len(listed) {
		params["request_ids"] += fmt.Sprintf(",… (%d more)", len(ids)-len(listed))
	}
	l.mu.Lock()
	l.auditSeq++
	seq := l.auditSeq
	l.mu.Unlock()
	ev := audit.Event{
		ID: audit.NewID(now, "ledger/"+l.o.ID, seq), Time: now, Actor: "coordinator:" + l.o.ID,
		Action: ActionRetry, Target: l.o.DC, Params: params, Outcome: audit.OutcomeOK,
	}
	if len(r.Failed) > 0 {
		ev.Outcome = audit.OutcomeFailed
		ev.Error = fmt.Sprintf("%d of %d requests not republished", len(r.Failed), len(ids))
		if len(errs) > 0 {
			ev.Error += ": " + strings.Join(errs[:min(len(errs), 5)], "; ")
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := l.outbox.Put(actx, ev); err != nil {
		l.fail(stageAudit, err, "reconciler round not audited")
	}
}

// seqRange describes sorted sequences: "7", "3-9 (5)".
func seqRange(seqs []uint64) string {
	switch len(seqs) {
	case 0:
		return ""
	case 1:
		return strconv.FormatUint(seqs[0], 10)
	}
	return fmt.Sprintf("%d-%d (%d)", seqs[0], seqs[len(seqs)-1], len(seqs))
}

// updateBacklog sets the backlog gauges of every DC of the topology.
func (l *Ledger) updateBacklog(ctx context.Context) {
	t, _, err := l.o.Store.Topology(ctx)
	if err != nil {
		return
	}
	for _, dc := range t.DCs {
		b, err := l.Backlog(ctx, dc.Name)
		if err != nil {
			l.m.errors.WithLabelValues(stageSearch).Inc()
			continue
		}
		l.m.backlog.WithLabelValues(dc.Name, StatePending).Set(float64(b.Pending))
		l.m.backlog.WithLabelValues(dc.Name, StateDeadLettered).Set(float64(b.DeadLettered))
	}
}
