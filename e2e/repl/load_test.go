package repl

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL error numbers the writers tell apart.
const (
	errDupKey   = 1062
	errReadOnly = 1290
)

// loadSpec describes a write load on one DC's master through the app user.
type loadSpec struct {
	dc *dc
	// writers run concurrently; each commits one transaction at a time.
	writers int
	// idBase is the first order id; writer w uses idBase + w*idStride + n.
	idBase int64
	// rows is the number of rows to insert (0: until the context ends).
	rows int
	// batch is the rows per INSERT transaction (default 1: autocommit).
	batch int
	// rate paces the inserts in rows per second over all writers (0: as
	// fast as the server takes them).
	rate float64
	// mix adds, after each insert, an UPDATE of one of the writer's rows
	// every 3rd transaction and a DELETE every 7th.
	mix bool
	// anyShard takes user ids from every shard instead of the DC's own.
	anyShard bool
	// oneUser gives every row of a transaction the same user id, so that
	// the transaction is one request (as an application writing for one
	// shard key does).
	oneUser bool
	// ids, when set, hands out the order ids of every writer in one
	// increasing sequence instead of a range per writer.
	ids *atomic.Int64
}

const idStride = 10_000_000

// loadResult is what a load committed.
type loadResult struct {
	mu sync.Mutex
	// live are the ids the load inserted and did not delete; deleted those
	// it deleted.
	live, deleted map[int64]bool
	// requests counts committed (transaction, shard) pairs: what reship
	// must publish for this load.
	requests int
	// uncertain counts transactions whose outcome is unknown (an error
	// after the statement reached the server).
	uncertain int
	inserted  int
	retries   int
	began     time.Time
	ended     time.Time
}

// rate is the achieved insert rate.
func (r *loadResult) rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(r.inserted) / r.ended.Sub(r.began).Seconds()
}

func (r *loadResult) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d rows inserted (%d live, %d deleted), %d requests, %d uncertain, %d retries in %s",
		r.inserted, len(r.live), len(r.deleted), r.requests, r.uncertain, r.retries, r.ended.Sub(r.began).Round(time.Millisecond))
}

// load is a running load; wait returns its result.
type load struct {
	done chan struct{}
	res  *loadResult
	err  error
}

// wait waits for the load to finish and fails the test on a writer error.
func (l *load) wait(t testing.TB) *loadResult {
	t.Helper()
	<-l.done
	if l.err != nil {
		t.Fatalf("load: %v", l.err)
	}
	return l.res
}

// runLoad starts spec's writers; they stop when the rows are inserted or
// ctx ends.
func (b *bed) runLoad(ctx context.Context, spec loadSpec) *load {
	if spec.batch <= 0 {
		spec.batch = 1
	}
	res := &loadResult{live: map[int64]bool{}, deleted: map[int64]bool{}, began: time.Now()}
	l := &load{done: make(chan struct{}), res: res}
	var (
		remaining atomic.Int64
		wg        sync.WaitGroup
		errOnce   sync.Once
	)
	remaining.Store(int64(spec.rows))
	if spec.rows == 0 {
		remaining.Store(1 << 62)
	}
	// A pacer hands out tokens of one batch each when a rate is set.
	var tokens chan struct{}
	if spec.rate > 0 {
		tokens = make(chan struct{}, spec.writers)
		wg.Go(func() {
			defer close(tokens)
			interval := time.Duration(float64(time.Second) * float64(spec.batch) / spec.rate)
			next := time.Now()
			for ctx.Err() == nil && remaining.Load() > 0 {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for w := range spec.writers {
		wg.Go(func() {
			wr := &writer{b: b, spec: spec, res: res, rng: rand.New(rand.NewPCG(uint64(spec.idBase), uint64(w))),
				next: spec.idBase + int64(w)*idStride}
			for ctx.Err() == nil {
				if tokens != nil {
					if _, ok := <-tokens; !ok {
						return
					}
				}
				n := int(min(int64(spec.batch), remaining.Add(-int64(spec.batch))+int64(spec.batch)))
				if n <= 0 {
					return
				}
				if err := wr.step(ctx, n); err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { l.err = err })
					}
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		res.mu.Lock()
		res.ended = time.Now()
		res.mu.Unlock()
		close(l.done)
	}()
	return l
}

// writer is one connection's worth of load.
type writer struct {
	b    *bed
	spec loadSpec
	res  *loadResult
	rng  *rand.Rand
	next int64
	mine []int64 // live ids this writer inserted
	txns int
}

// step inserts n rows in one transaction, then maybe updates or deletes
// one of the writer's rows.
func (w *writer) step(ctx context.Context, n int) error {
	ids := make([]int64, n)
	uids := make([]int64, n)
	shards := map[int]bool{}
	var sb strings.Builder
	sb.WriteString("INSERT INTO orders (id, user_id, amount_cents, note) VALUES ")
	for i := range n {
		if w.spec.ids != nil {
			ids[i] = w.spec.ids.Add(1)
		} else {
			ids[i] = w.next
			w.next++
		}
		if i > 0 && w.spec.oneUser {
			uids[i] = uids[0]
		} else {
			uids[i] = w.userID()
		}
		shards[w.b.shardOf(uids[i])] = true
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "(%d, %d, %d, 'w%d')", ids[i], uids[i], 100+w.rng.IntN(100000), ids[i])
	}
	if err := w.insert(ctx, sb.String(), ids, len(shards)); err != nil {
		return err
	}
	w.txns++
	if !w.spec.mix || len(w.mine) < 4 {
		return nil
	}
	switch {
	case w.txns%7 == 0:
		i := w.rng.IntN(len(w.mine))
		id := w.mine[i]
		w.mine = append(w.mine[:i], w.mine[i+1:]...)
		return w.change(ctx, fmt.Sprintf("DELETE FROM orders WHERE id = %d", id), func() {
			delete(w.res.live, id)
			w.res.deleted[id] = true
		})
	case w.txns%3 == 0:
		id := w.mine[w.rng.IntN(len(w.mine))]
		return w.change(ctx, fmt.Sprintf("UPDATE orders SET amount_cents = amount_cents + %d, note = 'u%d' WHERE id = %d",
			1+w.rng.IntN(100), w.txns, id), func() {})
	}
	return nil
}

// userID picks a user id of the DC's own shards (or of any shard).
func (w *writer) userID() int64 {
	if w.spec.anyShard {
		return 1 + w.rng.Int64N(1<<40)
	}
	owned := w.b.owned[w.spec.dc.name]
	return owned[w.rng.IntN(len(owned))]
}

// insert runs one INSERT on the DC's current master, retrying while the
// master is read-only or unreachable (a failover); a duplicate key on a
// retry means an earlier attempt committed.
func (w *writer) insert(ctx context.Context, stmt string, ids []int64, requests int) error {
	for attempt := 0; ; attempt++ {
		_, err := w.spec.dc.app().ExecContext(ctx, stmt)
		if err == nil || (attempt > 0 && mysqlErr(err) == errDupKey) {
			w.res.mu.Lock()
			for _, id := range ids {
				w.res.live[id] = true
			}
			w.res.inserted += len(ids)
			w.res.requests += requests
			w.res.mu.Unlock()
			if w.spec.mix {
				w.mine = append(w.mine, ids...)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) {
			return fmt.Errorf("insert %d..: %w", ids[0], err)
		}
		w.res.mu.Lock()
		w.res.retries++
		w.res.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// change runs an UPDATE or DELETE once; ok records its effect when it
// committed and touched a row. An error leaves the outcome unknown unless
// the server refused it as read-only.
func (w *writer) change(ctx context.Context, stmt string, ok func()) error {
	r, err := w.spec.dc.app().ExecContext(ctx, stmt)
	w.res.mu.Lock()
	defer w.res.mu.Unlock()
	switch {
	case err == nil:
		if n, _ := r.RowsAffected(); n > 0 {
			w.res.requests++
			ok()
		}
	case ctx.Err() != nil:
		return ctx.Err()
	case mysqlErr(err) == errReadOnly:
	case retryable(err):
		w.res.uncertain++
	default:
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// retryable reports errors of a master going away or being fenced.
func retryable(err error) bool {
	if n := mysqlErr(err); n != 0 {
		return n == errReadOnly || n == 1927 /* connection killed */ || n == 2013 || n == 2006
	}
	return true // network errors, bad connections
}

func mysqlErr(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}
