// Package retry is the one way drplane's long-running loops wait between
// attempts: a doubling Backoff from a shortest to a longest delay, and
// Sleep, a wait that ends early when the context does.
//
// The loops it serves retry forever (until their context ends) and start
// over at the shortest delay once an attempt makes progress, so the shape is
// a delay the caller advances and resets, not a "retry f up to N times"
// helper.
package retry

import (
	"context"
	"time"
)

// Backoff is a doubling wait between retries, from its shortest delay up to
// its longest. It is not safe for concurrent use: each loop keeps its own.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a backoff that starts at lo and doubles up to hi (hi below lo
// means lo every time).
func New(lo, hi time.Duration) *Backoff { return &Backoff{min: lo, max: max(hi, lo), cur: lo} }

// Wait sleeps for the current delay (or until ctx ends) and doubles it. It
// reports whether the whole delay passed, false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	return b.WaitOr(ctx, nil)
}

// WaitOr is Wait that also ends early when wake is ready (a value sent or
// the channel closed); a nil wake never is. It reports false only when ctx
// ended first. The delay doubles either way.
func (b *Backoff) WaitOr(ctx context.Context, wake <-chan struct{}) bool {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}

// Next is the delay the next Wait sleeps.
func (b *Backoff) Next() time.Duration { return b.cur }

// Reset goes back to the shortest delay.
func (b *Backoff) Reset() { b.cur = b.min }

// Sleep waits for d or until ctx ends. It reports whether the whole of d
// passed, false when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
