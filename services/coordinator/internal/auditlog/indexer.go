package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// Errors of the indexer.
var (
	// ErrInvalidOptions means Options lack something required.
	ErrInvalidOptions = errors.New("auditlog: invalid options")
	// errWatchBroken means the outbox watch ended; the indexer lists again.
	errWatchBroken = errors.New("auditlog: outbox watch broken")
)

// Defaults of Options.
const (
	DefaultBatchSize   = 500
	DefaultMinBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	maxRetentionPeriod = time.Minute
)

// Options configure an Indexer.
type Options struct {
	// Store is the etcd state store holding the outbox.
	Store *state.Store
	// Docs is the document store to index into.
	Docs docstore.Store
	// Index is the audit index (DefaultIndex when empty); the checkpoints
	// go to <Index>-meta.
	Index string
	// ID names this coordinator: the id of its checkpoint document.
	ID string
	// Retention is how long outbox entries are kept (default 24h).
	Retention time.Duration
	// RetentionEvery is how often expired entries are deleted (default a
	// quarter of Retention, at most a minute).
	RetentionEvery time.Duration
	// BatchSize bounds the events of one bulk request (default 500).
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait before retrying after a
	// failure (defaults 200ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Indexer copies the etcd audit outbox into the audit index.
type Indexer struct {
	o      Options
	outbox *audit.Outbox
	meta   string
	m      *metrics

	readyOnce sync.Once
	ready     chan struct{}

	mu sync.Mutex
	cp checkpoint // last checkpoint saved or loaded
}

// checkpoint is the meta-index document of one coordinator: the etcd
// revision up to which the outbox is indexed, in which etcd cluster.
type checkpoint struct {
	Coordinator string    `json:"coordinator"`
	Revision    int64     `json:"revision"`
	ClusterID   string    `json:"cluster_id"`
	Updated     time.Time `json:"updated"`
}

func metaMapping() docstore.Mapping {
	return docstore.Mapping{
		"coordinator": docstore.Keyword,
		"revision":    docstore.Long,
		"cluster_id":  docstore.Keyword,
		"updated":     docstore.Date,
	}
}

// New checks the options and returns an indexer; Run starts it.
func New(o Options) (*Indexer, error) {
	switch {
	case o.Store == nil:
		return nil, fmt.Errorf("%w: no etcd store", ErrInvalidOptions)
	case o.Docs == nil:
		return nil, fmt.Errorf("%w: no document store", ErrInvalidOptions)
	case o.ID == "":
		return nil, fmt.Errorf("%w: no coordinator id", ErrInvalidOptions)
	}
	if o.Index == "" {
		o.Index = DefaultIndex
	}
	if err := docstore.ValidateIndexName(o.Index + metaSuffix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if o.Retention <= 0 {
		o.Retention = DefaultOutboxRetention
	}
	if o.RetentionEvery <= 0 {
		o.RetentionEvery = min(o.Retention/4, maxRetentionPeriod)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Indexer{
		o: o, outbox: audit.NewOutbox(o.Store), meta: o.Index + metaSuffix,
		m: newMetrics(o.Registerer, o.Now), ready: make(chan struct{}),
	}, nil
}

// Ready is closed once the indexes exist and the outbox has been indexed up
// to the revision of the first listing.
func (ix *Indexer) Ready() <-chan struct{} { return ix.ready }

// Checkpoint returns the etcd revision the outbox is indexed up to, as last
// saved (or loaded).
func (ix *Indexer) Checkpoint() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.cp.Revision
}

// Run indexes the outbox and deletes expired entries until ctx ends; it
// returns nil then. It retries failures of etcd and of the document store
// with backoff, and returns an error only when the audit index cannot be
// used at all (its existing mapping conflicts with Mapping).
func (ix *Indexer) Run(ctx context.Context) error {
	if err := ix.ensureIndexes(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ix.retain(gctx) })
	g.Go(func() error { return ix.follow(gctx) })
	return g.Wait()
}

// ensureIndexes creates or checks both indexes, retrying while the store is
// unavailable.
func (ix *Indexer) ensureIndexes(ctx context.Context) error {
	b := ix.backoff()
	for ctx.Err() == nil {
		err := ix.o.Docs.EnsureIndex(ctx, ix.o.Index, Mapping())
		if err == nil {
			err = ix.o.Docs.EnsureIndex(ctx, ix.meta, metaMapping())
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, docstore.ErrUnavailable):
			ix.fail(stageEnsure, err, "audit store unavailable; retrying")
			b.Wait(ctx)
		default:
			ix.fail(stageEnsure, err, "cannot create the audit index")
			return fmt.Errorf("auditlog: ensure index %s: %w", ix.o.Index, err)
		}
	}
	return nil
}

// follow lists and watches the outbox, indexing what it finds, until ctx
// ends.
func (ix *Indexer) follow(ctx context.Context) error {
	b := ix.backoff()
	cp, err := ix.loadCheckpoint(ctx, b)
	if err != nil {
		return nil // ctx ended
	}
	for ctx.Err() == nil {
		next, err := ix.catchUp(ctx, cp)
		if err != nil {
			if ctx.Err() == nil {
				ix.o.Logger.Warn().Err(err).Int64("checkpoint", cp.Revision).Msg("audit outbox listing failed; retrying")
				b.Wait(ctx)
			}
			continue
		}
		cp = next
		ix.readyOnce.Do(func() { close(ix.ready) })
		next, err = ix.watch(ctx, cp)
		cp = next
		switch {
		case ctx.Err() != nil:
		case err != nil:
			ix.o.Logger.Warn().Err(err).Int64("checkpoint", cp.Revision).Msg("audit outbox watch ended; listing again")
			b.Wait(ctx)
		default:
			b.Reset()
		}
	}
	return nil
}

// loadCheckpoint reads this coordinator's checkpoint, retrying while the
// store is unavailable; a missing one is revision 0. The error is the
// context's.
func (ix *Indexer) loadCheckpoint(ctx context.Context, b *retry.Backoff) (checkpoint, error) {
	for {
		raw, err := ix.o.Docs.Get(ctx, ix.meta, ix.o.ID)
		var cp checkpoint
		switch {
		case err == nil:
			if derr := json.Unmarshal(raw, &cp); derr != nil {
				ix.fail(stageCheckpoint, derr, "unreadable audit checkpoint; indexing the whole outbox")
				cp = checkpoint{}
			}
			ix.setCheckpoint(cp)
			ix.o.Logger.Info().Int64("revision", cp.Revision).Msg("audit indexer resumes from its checkpoint")
			return cp, nil
		case errors.Is(err, docstore.ErrNotFound):
			return checkpoint{}, nil
		case ctx.Err() != nil:
			return cp, ctx.Err()
		}
		ix.fail(stageCheckpoint, err, "cannot read the audit checkpoint; retrying")
		b.Wait(ctx)
	}
}

// catchUp indexes every outbox entry modified after cp, as of one etcd
// revision, and returns the checkpoint at that revision. A checkpoint from
// another etcd cluster, or ahead of this one, is discarded.
func (ix *Indexer) catchUp(ctx context.Context, cp checkpoint) (checkpoint, error) {
	cli := ix.o.Store.Client()
	prefix := ix.outbox.Prefix()
	end := clientv3.GetPrefixRangeEnd(prefix)
	start, rev := prefix, int64(0)
	var cluster string
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end), clientv3.WithLimit(int64(ix.o.BatchSize)), clientv3.WithMinModRev(cp.Revision + 1),
		}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, start, opts...)
		if err != nil {
			ix.m.errors.WithLabelValues(stageList).Inc()
			return cp, fmt.Errorf("auditlog: list outbox: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			cluster = strconv.FormatUint(resp.Header.ClusterId, 16)
			if cp.Revision > 0 && (cp.ClusterID != cluster || cp.Revision > rev) {
				ix.o.Logger.Warn().Int64("checkpoint", cp.Revision).Str("checkpoint_cluster", cp.ClusterID).
					Int64("etcd_revision", rev).Str("etcd_cluster", cluster).
					Msg("audit checkpoint is from another etcd cluster or ahead of it; indexing the whole outbox")
				cp = checkpoint{}
				rev = 0
				continue
			}
		}
		if err := ix.indexKVs(ctx, resp.Kvs); err != nil {
			return cp, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	next := checkpoint{Coordinator: ix.o.ID, Revision: rev, ClusterID: cluster}
	ix.saveCheckpoint(ctx, next)
	return next, nil
}

// watch indexes outbox changes after cp until the watch breaks or ctx ends,
// and returns the checkpoint reached. A compacted start revision returns no
// error: the caller lists again at once.
func (ix *Indexer) watch(ctx context.Context, cp checkpoint) (checkpoint, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wc := ix.o.Store.Client().Watch(wctx, ix.outbox.Prefix(), clientv3.WithPrefix(), clientv3.WithRev(cp.Revision+1))
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return cp, nil
		case resp, ok = <-wc:
		}
		if !ok {
			ix.m.errors.WithLabelValues(stageWatch).Inc()
			return cp, errWatchBroken
		}
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			ix.o.Logger.Info().Int64("checkpoint", cp.Revision).Int64("compacted", resp.CompactRevision).
				Msg("audit outbox history compacted past the checkpoint; listing again")
			return cp, nil
		}
		if err := resp.Err(); err != nil {
			ix.m.errors.WithLabelValues(stageWatch).Inc()
			return cp, fmt.Errorf("%w: %w", errWatchBroken, err)
		}
		var kvs []*mvccpb.KeyValue
		last := cp.Revision
		for _, ev := range resp.Events {
			last = max(last, ev.Kv.ModRevision)
			if ev.Type == clientv3.EventTypePut {
				kvs = append(kvs, ev.Kv)
			}
		}
		if len(kvs) > 0 {
			if err := ix.indexKVs(ctx, kvs); err != nil {
				return cp, err
			}
		}
		cp.Revision = last
		if len(kvs) > 0 {
			ix.saveCheckpoint(ctx, cp)
		}
	}
}

// indexKVs decodes outbox entries and writes them in bulk. Entries that do
// not decode, and events the store rejects, are logged, counted and
// skipped: retrying would not help. Any other failure is returned, and the
// caller lists again from its checkpoint.
func (ix *Indexer) indexKVs(ctx context.Context, kvs []*mvccpb.KeyValue) error {
	for len(kvs) > 0 {
		n := min(len(kvs), ix.o.BatchSize)
		batch := kvs[:n]
		kvs = kvs[n:]
		ops := make([]docstore.Op, 0, len(batch))
		times := make(map[string]time.Time, len(batch))
		for _, kv := range batch {
			var e audit.Event
			if err := json.Unmarshal(kv.Value, &e); err != nil || e.ID == "" {
				ix.fail(stageDecode, fmt.Errorf("outbox entry %s: not an audit event: %w", kv.Key, err), "skipping an outbox entry")
				continue
			}
			o, err := op(e)
			if err != nil {
				ix.fail(stageDecode, err, "skipping an outbox entry")
				continue
			}
			ops = append(ops, o)
			times[e.ID] = e.Time
		}
		if len(ops) == 0 {
			continue
		}
		res, err := ix.o.Docs.Bulk(ctx, ix.o.Index, ops)
		if err != nil {
			ix.m.errors.WithLabelValues(stageBulk).Inc()
			return fmt.Errorf("auditlog: index %d events: %w", len(ops), err)
		}
		indexed := 0
		var retry error
		for _, it := range res.Items {
			switch {
			case it.Err == nil:
				indexed++
				ix.m.sawEvent(times[it.ID])
			case errors.Is(it.Err, docstore.ErrRejected):
				ix.fail(stageRejected, it.Err, "audit event rejected by the index; skipped")
			default:
				retry = it.Err
			}
		}
		ix.m.indexed.Add(float64(indexed))
		if retry != nil {
			ix.m.errors.WithLabelValues(stageBulk).Inc()
			return fmt.Errorf("auditlog: index events: %w", retry)
		}
	}
	return nil
}

// saveCheckpoint writes cp to the meta index. A failure is only counted and
// logged: the checkpoint is an optimisation, re-indexing is harmless.
func (ix *Indexer) saveCheckpoint(ctx context.Context, cp checkpoint) {
	cp.Coordinator = ix.o.ID
	cp.Updated = ix.o.Now().UTC()
	raw, err := json.Marshal(cp)
	if err == nil {
		var res docstore.BulkResult
		res, err = ix.o.Docs.Bulk(ctx, ix.meta, []docstore.Op{{ID: ix.o.ID, Doc: raw}})
		if err == nil {
			err = res.Err()
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			ix.fail(stageCheckpoint, err, "cannot save the audit checkpoint")
		}
		return
	}
	ix.setCheckpoint(cp)
}

func (ix *Indexer) setCheckpoint(cp checkpoint) {
	ix.mu.Lock()
	ix.cp = cp
	ix.mu.Unlock()
	ix.m.checkpoint.Set(float64(cp.Revision))
}

// retain deletes expired outbox entries every RetentionEvery until ctx
// ends.
func (ix *Indexer) retain(ctx context.Context) error {
	t := time.NewTicker(ix.o.RetentionEvery)
	defer t.Stop()
	for {
		n, err := ix.outbox.DeleteBefore(ctx, ix.o.Now().Add(-ix.o.Retention))
		ix.m.deleted.Add(float64(n))
		switch {
		case err != nil && ctx.Err() == nil:
			ix.fail(stageRetention, err, "cannot delete expired audit outbox entries")
		case n > 0:
			ix.o.Logger.Debug().Int("deleted", n).Dur("retention", ix.o.Retention).Msg("expired audit outbox entries deleted")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fail counts and logs a failure of stage.
func (ix *Indexer) fail(stage string, err error, msg string) {
	ix.m.errors.WithLabelValues(stage).Inc()
	ix.o.Logger.Warn().Err(err).Str("stage", stage).Msg(msg)
}
