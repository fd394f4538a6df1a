package router

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// DefaultAckDrain is the default bound on how long an acknowledgement of a
// routing table waits for the writes admitted under an older table.
const DefaultAckDrain = 5 * time.Second

// inflight counts the writes running through Write, per keyspace and shard,
// so that an acknowledgement of a table that froze (or gave away) a shard
// is sent only after the writes admitted to it before have finished.
type inflight struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    map[shardKey]int
}

type shardKey struct {
	keyspace string
	shard    int
}

func newInflight() *inflight {
	f := &inflight{n: map[shardKey]int{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *inflight) add(k shardKey) {
	f.mu.Lock()
	f.n[k]++
	f.mu.Unlock()
}

func (f *inflight) done(k shardKey) {
	f.mu.Lock()
	if f.n[k]--; f.n[k] <= 0 {
		delete(f.n, k)
	}
	f.mu.Unlock()
	f.cond.Broadcast()
}

// drain waits until no write of keyspace runs on a shard for which closed
// reports true, or until deadline; it reports whether they drained.
func (f *inflight) drain(keyspace string, closed func(shard int) bool, deadline time.Time) bool {
	stop := time.AfterFunc(time.Until(deadline), f.cond.Broadcast)
	defer stop.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		busy := false
		for k := range f.n {
			if k.keyspace == keyspace && closed(k.shard) {
				busy = true
				break
			}
		}
		if !busy {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		f.cond.Wait()
	}
}

// Write runs fn with the handle WriteDB returns for key, and fails as
// WriteDB does without calling fn. While fn runs the write counts as in
// flight on its shard: when a new routing table freezes the shard or gives
// it to another DC, the router acknowledges that table (AckRoutes, which a
// shard handoff waits for before it takes the old owner's watermark) only
// once fn returned, or Options.AckDrain passed. So a write done through
// Write either commits before the handoff's watermark or is refused; a
// write done through WriteDB directly is not waited for. Keep fn short: it
// holds the handoff of its shard.
func (r *Router) Write(ctx context.Context, keyspace, key string, fn func(db *sql.DB, rt Route) error) error {
	// Count the write before the lookup, so a table swapped in between the
	// two is either seen by the lookup or waits for the count.
	db, rt, err := r.writeDB(ctx, keyspace, key, func(rt Route) { r.inflight.add(shardKey{rt.Keyspace, rt.Shard}) })
	if err != nil {
		return err
	}
	defer r.inflight.done(shardKey{rt.Keyspace, rt.Shard})
	return fn(db, rt)
}
