package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// process applies one batch of messages and acks them. It returns nil when
// ctx ends before the acks (the messages come again) and an error only
// when the afterCommit hook stops it.
func (a *Applier) process(ctx context.Context, msgs []jetstream.Msg) error {
	began := time.Now()
	items := make([]*item, len(msgs))
	first := map[string]bool{}
	var good []*item
	for i, msg := range msgs {
		it := decode(msg, a.o.DC)
		items[i] = it
		if it.meta != nil && it.meta.NumDelivered > 1 {
			a.m.redeliveries.Inc()
			it.attempts = int(it.meta.NumDelivered) - 1
		}
		switch {
		case it.bad != nil:
			it.poison = it.bad
		case first[it.key()]:
			it.skip = true
		default:
			first[it.key()] = true
			good = append(good, it)
		}
	}
	a.m.batchSize.Observe(float64(len(msgs)))
	if a.o.DuplicateDelivery {
		a.duplicate(ctx, items)
	}
	good = a.diverged(ctx, good)
	if len(good) > 0 {
		err := a.applyRetrying(ctx, good)
		if err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Int("requests", len(good)).Msg("batch failed; applying its requests one by one")
			a.m.retries.WithLabelValues("isolate").Inc()
			a.isolate(ctx, good)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if a.afterCommit != nil {
		if err := a.afterCommit(); err != nil {
			return fmt.Errorf("%w: %w", errStopped, err)
		}
	}
	for _, it := range items {
		if it.poison != nil {
			if !a.deadLetter(ctx, it) {
				return nil
			}
		}
	}
	for _, it := range items {
		if it.unacked {
			continue
		}
		if err := it.msg.Ack(); err != nil {
			a.log.Debug().Err(err).Msg("ack (the message comes again and is skipped)")
		}
	}
	a.record(items, a.o.Now())
	a.m.batchSeconds.Observe(time.Since(began).Seconds())
	return nil
}

// applyRetrying applies items in one transaction, retrying transient
// errors with backoff until it succeeds or ctx ends; the messages are kept
// with in-progress acks meanwhile. It returns the first non-transient
// error, or ctx's.
func (a *Applier) applyRetrying(ctx context.Context, items []*item) error {
	b := retry.New(minBackoff, maxBackoff)
	lastTouch := time.Now()
	for n := 0; ; n++ {
		err := a.applyTx(ctx, items)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !transient(err) {
			return err
		}
		a.m.retries.WithLabelValues("transient").Inc()
		ev := a.log.Debug()
		if n == 0 || n%20 == 0 {
			ev = a.log.Warn()
		}
		ev.Err(err).Int("attempt", n+1).Dur("retry_in", b.Next()).Msg("transient apply error; retrying")
		a.sess.release()
		if !b.Wait(ctx) {
			return ctx.Err()
		}
		if time.Since(lastTouch) > a.o.AckWait/3 {
			for _, it := range items {
				_ = it.msg.InProgress()
			}
			lastTouch = time.Now()
		}
	}
}

// isolate applies items one per transaction, in order. A request that
// fails with a non-transient error is tried MaxRedeliveries more times
// (a malformed one not at all) and then marked poison.
func (a *Applier) isolate(ctx context.Context, items []*item) {
	for _, it := range items {
		for {
			err := a.applyRetrying(ctx, []*item{it})
			if err == nil || ctx.Err() != nil {
				break
			}
			it.attempts++
			if hopeless(err) || it.attempts > a.o.MaxRedeliveries {
				it.poison = err
				break
			}
			a.log.Warn().Err(err).Str("origin", it.ev.GetOriginDc()).Str("request", it.ev.GetRequestId()).
				Int("attempt", it.attempts).Msg("request failed; retrying before dead-lettering it")
			if !retry.Sleep(ctx, time.Duration(it.attempts)*2*minBackoff) {
				return
			}
		}
	}
}

// applyTx applies items in one transaction on the apply session: the
// dedup rows first, then the rows of the requests not applied before. On
// success every item is done, and fresh when applied now.
func (a *Applier) applyTx(ctx context.Context, items []*item) (err error) {
	dbs := make([]string, len(items))
	for i, it := range items {
		it.fresh, it.done = false, false
		db, err := keyspaceDB(it.ev, a.keyspace)
		if err != nil {
			return err
		}
		if err := a.ensureTable(ctx, db); err != nil {
			return err
		}
		dbs[i] = db
	}
	conn, err := a.sess.get(ctx)
	if err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var order []string
	byDB := map[string][]dedupRow{}
	for i, it := range items {
		if byDB[dbs[i]] == nil {
			order = append(order, dbs[i])
		}
		byDB[dbs[i]] = append(byDB[dbs[i]], dedupRow{it: it, origin: it.ev.GetOriginDc(), rid: it.ev.GetRequestId(), gtid: it.ev.GetGtid()})
	}
	for _, db := range order {
		if err := markApplied(ctx, tx, db, byDB[db]); err != nil {
			return err
		}
	}
	var ops []rowOp
	for i, it := range items {
		if it.fresh {
			for _, op := range rowOps(it.ev, dbs[i]) {
				op.it = it
				ops = append(ops, op)
			}
		}
	}
	ops, stale, err := guardOps(ctx, tx, ops)
	if err != nil {
		return err
	}
	if err := execOps(ctx, tx, ops); err != nil {
		return err
	}
	if a.o.HoldBatchAfter > 0 && a.applied >= a.o.HoldBatchAfter {
		a.log.Warn().Int("requests", len(items)).Int("applied", a.applied).
			Msg("TEST HOOK test.hold_batch_after: holding a batch before its commit until the process ends")
		<-ctx.Done()
		return ctx.Err()
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, it := range items {
		it.done, it.stale = true, stale[it]
		if it.fresh {
			a.applied++
		}
	}
	return nil
}

// keyspace finds a keyspace of the current topology.
func (a *Applier) keyspace(name string) (ks topology.Keyspace, ok bool) {
	for _, k := range a.o.Keyspaces() {
		if k.Name == name {
			return k, true
		}
	}
	return ks, false
}

// ensureTable creates the dedup table of db once per run.
func (a *Applier) ensureTable(ctx context.Context, db string) error {
	if a.ensured[db] {
		return nil
	}
	pool, err := a.sess.currentPool()
	if err != nil {
		return err
	}
	if err := createDedupTable(ctx, pool, db); err != nil {
		return err
	}
	if _, err := pool.ExecContext(ctx, barrierDDL(db)); err != nil {
		return fmt.Errorf("create %s: %w", qualify(db, "drplane_barrier"), err)
	}
	for _, ddl := range rowPositionDDL(db) {
		if _, err := pool.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("create the ordering guard's tables in %s: %w", quoteIdent(db), err)
		}
	}
	a.ensured[db] = true
	return nil
}

func createDedupTable(ctx context.Context, pool *sql.DB, db string) error {
	if !validIdent(db) {
		return fmt.Errorf("%w: database name %q", ErrInvalidEvent, db)
	}
	if _, err := pool.ExecContext(ctx, dedupDDL(db)); err != nil {
		return fmt.Errorf("create %s: %w", qualify(db, DedupTable), err)
	}
	return nil
}

// record reports a finished batch: metrics, ledger facts, watermarks and
// statistics.
func (a *Applier) record(items []*item, at time.Time) {
	for _, it := range items {
		switch {
		case it.skip:
			a.m.duplicates.WithLabelValues(it.ev.GetOriginDc()).Inc()
		case it.ev == nil || !it.done:
		case it.fresh:
			origin := it.ev.GetOriginDc()
			if it.stale > 0 {
				a.m.staleRows.WithLabelValues(origin).Add(float64(it.stale))
				a.log.Warn().Str("origin", origin).Str("request", it.ev.GetRequestId()).Str("gtid", it.ev.GetGtid()).
					Int("rows_skipped", it.stale).Int("rows", len(it.ev.GetRows())).
					Msg("request older than changes already applied to some of its rows: those rows keep the newer data")
			}
			a.m.applied.WithLabelValues(origin).Inc()
			a.m.rows.WithLabelValues(origin).Add(float64(len(it.ev.GetRows())))
			if ct := it.commitTime(); !ct.IsZero() {
				a.m.lag.WithLabelValues(origin).Observe(at.Sub(ct).Seconds())
			}
			a.led.offer(a.fact(it, drplanev1.LedgerUpdate_KIND_APPLIED, at, nil))
		default:
			// Applied before, maybe by a run that died before reporting it.
			a.m.duplicates.WithLabelValues(it.ev.GetOriginDc()).Inc()
			a.led.offer(a.fact(it, drplanev1.LedgerUpdate_KIND_APPLIED, at, nil))
		}
	}
	a.prog.record(items, at)
}

// fact builds a ledger fact about it.
func (a *Applier) fact(it *item, kind drplanev1.LedgerUpdate_Kind, at time.Time, err error) *drplanev1.LedgerUpdate {
	u := &drplanev1.LedgerUpdate{
		OriginDc: it.origin(), RequestId: it.requestID(), Kind: kind, Dc: a.o.DC, At: timestamppb.New(at),
		Keyspace: it.ev.GetKeyspace(), Shard: it.ev.GetShard(), Gtid: it.ev.GetGtid(),
	}
	if err != nil {
		u.Error = err.Error()
	}
	return u
}

// duplicate is the duplicate-delivery test hook: it publishes each message
// that is not itself a copy once more into the inbound stream.
func (a *Applier) duplicate(ctx context.Context, items []*item) {
	for _, it := range items {
		if it.msg.Headers().Get(HeaderDuplicate) != "" {
			continue
		}
		id := it.msg.Headers().Get(jetstream.MsgIDHeader)
		if id == "" {
			id = fmt.Sprintf("%s:%d", embednats.InStream(a.o.DC), it.streamSeq())
		}
		msg := nats.NewMsg(embednats.ReplaySubject(a.o.DC) + "." + it.origin())
		msg.Data = it.msg.Data()
		msg.Header.Set(HeaderDuplicate, "1")
		msg.Header.Set(jetstream.MsgIDHeader, id+"#dup")
		if _, err := a.js.PublishMsg(ctx, msg); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn().Err(err).Msg("duplicate-delivery hook: republish failed")
		}
	}
}
