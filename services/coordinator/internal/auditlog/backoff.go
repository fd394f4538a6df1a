package auditlog

import (
	"context"
	"time"
)

// backoff is a doubling wait between retries.
type backoff struct {
	lo, hi, cur time.Duration
}

func (ix *Indexer) backoff() *backoff {
	return &backoff{lo: ix.o.MinBackoff, hi: ix.o.MaxBackoff, cur: ix.o.MinBackoff}
}

// wait sleeps for the current delay (or until ctx ends) and doubles it.
func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.cur = min(2*b.cur, b.hi)
}

// reset goes back to the shortest delay.
func (b *backoff) reset() { b.cur = b.lo }
