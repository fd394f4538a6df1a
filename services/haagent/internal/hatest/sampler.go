package hatest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Sampler reads read_only on every instance at once, every few
// milliseconds, as the app user, and records every sample in which more
// than one instance answered read_only=0.
type Sampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	samples    int
	violations []string
}

// StartSampler starts sampling every instance of the topology.
func (e *Env) StartSampler() *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{cancel: cancel, done: make(chan struct{})}
	type target struct {
		name string
		db   *sql.DB
	}
	var ts []target
	for _, in := range e.Instances() {
		ts = append(ts, target{in.Name(), e.AppDB(in.Addr(), 200*time.Millisecond)})
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			writable := make([]bool, len(ts))
			var wg sync.WaitGroup
			for i, t := range ts {
				wg.Go(func() {
					qctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
					defer cancel()
					var ro int
					if err := t.db.QueryRowContext(qctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err == nil {
						writable[i] = ro == 0
					}
				})
			}
			wg.Wait()
			var names []string
			for i, w := range writable {
				if w {
					names = append(names, ts[i].name)
				}
			}
			s.mu.Lock()
			s.samples++
			if len(names) > 1 {
				s.violations = append(s.violations, fmt.Sprintf("%s: writable %s", time.Now().Format("15:04:05.000"), strings.Join(names, ",")))
			}
			s.mu.Unlock()
		}
	}()
	e.T.Cleanup(func() { s.Stop() })
	return s
}

// Stop ends sampling and returns the sample count and the violations.
func (s *Sampler) Stop() (int, []string) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, append([]string(nil), s.violations...)
}
