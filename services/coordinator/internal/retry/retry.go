// Package retry is the coordinator's doubling wait between attempts of its
// background loops (audit indexing, ledger indexing and reconciling).
package retry

import (
	"context"
	"time"
)

// Backoff is a doubling wait between retries, from Min up to Max. It is
// not safe for concurrent use: each loop keeps its own.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a backoff that starts at lo and doubles up to hi.
func New(lo, hi time.Duration) *Backoff { return &Backoff{min: lo, max: max(hi, lo), cur: lo} }

// Wait sleeps for the current delay (or until ctx ends) and doubles it.
func (b *Backoff) Wait(ctx context.Context) {
	Sleep(ctx, b.cur)
	b.cur = min(2*b.cur, b.max)
}

// Next is the delay the next Wait sleeps.
func (b *Backoff) Next() time.Duration { return b.cur }

// Reset goes back to the shortest delay.
func (b *Backoff) Reset() { b.cur = b.min }

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
