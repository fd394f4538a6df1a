package hatest

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/masterdb"
)

// Writer inserts rows through the app user into whatever instance the
// master record names, one at a time, and remembers which inserts the
// server acknowledged.
type Writer struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	acked    []int64
	failed   int
	lastOK   time.Time
	firstErr time.Time
	// oks are the acknowledged writes' start and acknowledgement times.
	oks []okWrite
}

type okWrite struct{ start, ack time.Time }

// StartWriter starts the writer; Stop ends it.
func (e *Env) StartWriter() *Writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{cancel: cancel, done: make(chan struct{})}
	res := masterdb.New(masterdb.Options{Store: e.Store, DC: DC, Cluster: Cluster, User: e.DB.AppUser,
		Password: e.DB.AppPassword, Database: e.DB.Database, Logger: zerolog.Nop(), Timeout: time.Second})
	go func() { _ = res.Run(ctx) }()
	go func() {
		defer close(w.done)
		for id := int64(1); ctx.Err() == nil; id++ {
			start := time.Now()
			db, _, err := res.DB()
			if err == nil {
				_, err = insert(ctx, db, id)
			}
			now := time.Now()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, id)
				w.lastOK = now
				w.oks = append(w.oks, okWrite{start: start, ack: now})
			} else {
				w.failed++
				if w.firstErr.IsZero() || w.lastOK.After(w.firstErr) {
					w.firstErr = now
				}
			}
			w.mu.Unlock()
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}()
	t := e.T
	t.Cleanup(func() { w.Stop() })
	return w
}

func insert(ctx context.Context, db *sql.DB, id int64) (sql.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return db.ExecContext(ctx, "INSERT INTO "+Table+" (id) VALUES (?)", id)
}

// Stop ends the writer and returns the acknowledged ids and the number of
// failed attempts.
func (w *Writer) Stop() ([]int64, int) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.acked...), w.failed
}

// Acked returns how many writes were acknowledged so far.
func (w *Writer) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// FirstOKAfter returns when the first write begun after t was
// acknowledged (zero when none yet). A write begun before t and
// acknowledged just after it says nothing about a fault injected at t.
func (w *Writer) FirstOKAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ok := range w.oks {
		if ok.start.After(t) {
			return ok.ack
		}
	}
	return time.Time{}
}
