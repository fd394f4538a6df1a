package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
)

// Defaults of Options.
const (
	DefaultWaitTimeout = 10 * time.Second
	DefaultRetention   = 24 * time.Hour
	DefaultPruneEvery  = 10 * time.Minute
	DefaultRetryDelay  = 200 * time.Millisecond
	// replyMargin is kept from the caller's deadline so that the answer
	// "still queued" reaches it before it gives up.
	replyMargin = 500 * time.Millisecond
)

// Options configures a Queue.
type Options struct {
	Store *state.Store
	// Leader tells when this coordinator leads (and so applies the queue).
	Leader *leader.Leader
	// WaitTimeout bounds how long Submit waits for the leader
	// (DefaultWaitTimeout when zero).
	WaitTimeout time.Duration
	// Retention is how long finished operations are kept
	// (DefaultRetention when zero); PruneEvery how often the leader deletes
	// older ones (DefaultPruneEvery when zero).
	Retention  time.Duration
	PruneEvery time.Duration
	// RetryDelay is the pause after a failed etcd read or write
	// (DefaultRetryDelay when zero).
	RetryDelay time.Duration
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Queue submits operations (on any coordinator) and, in Run, applies them
// while this coordinator leads.
type Queue struct {
	o      Options
	prefix string
	outbox *audit.Outbox
	seq    atomic.Uint64
}

// New returns a queue.
func New(o Options) *Queue {
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = DefaultPruneEvery
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Queue{o: o, prefix: o.Store.Prefix("ops"), outbox: audit.NewOutbox(o.Store)}
}

// Key returns the etcd key of operation id.
func (q *Queue) Key(id string) string { return q.prefix + id }

// Prefix returns the key prefix of the queue.
func (q *Queue) Prefix() string { return q.prefix }

// Enqueue writes a PENDING operation of kind with params p, requested by
// the token name who, and returns it (with its Revision) without waiting.
// Errors wrap ErrNotQueued.
func (q *Queue) Enqueue(ctx context.Context, kind Kind, p Params, who string) (Op, error) {
	now := q.o.Now()
	op := Op{ID: newID(now), Kind: kind, Params: p, RequestedBy: who, RequestedAt: now.UTC(), State: Pending}
	rev, err := state.Put(ctx, q.o.Store, q.Key(op.ID), op, state.PutOptions{PrevRev: 0})
	if err != nil {
		return op, fmt.Errorf("%w: %w", ErrNotQueued, err)
	}
	op.Revision = rev
	q.o.Logger.Info().Str("op", op.ID).Str("kind", string(kind)).Str("target", op.Target()).Str("by", who).Msg("operation queued")
	return op, nil
}

// Submit queues an operation and waits until the leader finished it. It
// returns the finished operation, and for a FAILED one its API error (the
// code the leader recorded). When the leader has not finished it within the
// wait timeout (or shortly before ctx's deadline), it returns the pending
// operation and UNAVAILABLE with the operation id in the error metadata:
// the operation stays queued and is applied when a leader runs. An
// operation that could not be queued fails with UNAVAILABLE wrapping
// ErrNotQueued.
func (q *Queue) Submit(ctx context.Context, kind Kind, p Params, who string) (Op, error) {
	op, err := q.Enqueue(ctx, kind, p, who)
	if err != nil {
		if ctx.Err() != nil {
			return op, fmt.Errorf("%w: %w", ErrNotQueued, ctx.Err())
		}
		return op, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cannot queue the operation in etcd")
	}
	return q.Wait(ctx, op)
}

// Wait follows a queued operation until it finished, as Submit does.
func (q *Queue) Wait(ctx context.Context, op Op) (Op, error) {
	wait := q.o.WaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-replyMargin)
	}
	wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	defer cancel()
	cur, err := q.follow(wctx, op)
	switch {
	case err == nil && cur.State == Failed:
		return cur, cur.Err()
	case err == nil:
		return cur, nil
	case ctx.Err() != nil:
		return cur, ctx.Err()
	case wctx.Err() != nil:
		return cur, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			"operation %s is still queued after %s: no coordinator leader applied it yet; it stays queued and is applied as soon as a leader runs",
			op.ID, wait.Round(time.Millisecond)).WithMetadata(MetaOperationID, op.ID)
	}
	return cur, err
}

// follow watches the operation until it is finished or ctx ends.
func (q *Queue) follow(ctx context.Context, op Op) (Op, error) {
	key := q.Key(op.ID)
	cur, from := op, op.Revision+1
	for {
		for ev := range state.Watch[Op](ctx, q.o.Store, key, false, from) {
			from = ev.Rev + 1
			if ev.Deleted {
				return cur, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT,
					"operation %s was deleted before it finished", op.ID).WithMetadata(MetaOperationID, op.ID)
			}
			cur = ev.Value
			cur.Revision = ev.Rev
			if cur.Finished() {
				return cur, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return cur, err
		}
		// The watch broke: read the record (its events may be compacted
		// away), then watch again.
		got, err := q.Get(ctx, op.ID)
		if err == nil {
			cur, from = got, got.Revision+1
			if cur.Finished() {
				return cur, nil
			}
		}
		if !retry.Sleep(ctx, q.o.RetryDelay) {
			return cur, ctx.Err()
		}
	}
}

// Get reads one operation.
func (q *Queue) Get(ctx context.Context, id string) (Op, error) {
	op, rev, err := state.Get[Op](ctx, q.o.Store, q.Key(id))
	op.Revision = rev
	return op, err
}

// List returns every operation record, oldest first (by the revision that
// queued it), with the header revision of the read.
func (q *Queue) List(ctx context.Context) ([]Op, int64, error) {
	resp, err := q.o.Store.Client().Get(ctx, q.prefix, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("ops: list: %w", err)
	}
	out := make([]Op, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var op Op
		if err := json.Unmarshal(kv.Value, &op); err != nil {
			q.o.Logger.Error().Err(err).Str("key", string(kv.Key)).Msg("operation record does not decode; skipped")
			continue
		}
		op.Revision = kv.ModRevision
		out = append(out, op)
	}
	return out, resp.Header.Revision, nil
}

// errFenced reports that the leader's fence no longer holds.
var errFenced = errors.New("ops: fenced out")
