// Package check waits in tests without sleeping and hoping. For polls a
// condition until it holds, and because the condition returns an error
// rather than a bool, a timeout reports what was last wrong (the style of
// nats-server's checkFor). Hold samples an invariant over a window and
// fails at the first sample that breaks it.
package check

import (
	"fmt"
	"testing"
	"time"
)

// Every is the default sampling interval of For and Hold when every is 0.
const Every = 20 * time.Millisecond

// For calls cond every interval until it returns nil, and returns how long
// that took. When timeout passes first it fails the test with the last
// error cond returned.
func For(t testing.TB, timeout, every time.Duration, cond func() error) time.Duration {
	t.Helper()
	if every <= 0 {
		every = Every
	}
	began := time.Now()
	deadline := began.Add(timeout)
	for {
		err := cond()
		if err == nil {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			t.Fatalf("check: still failing after %s: %v", timeout, err)
			return time.Since(began)
		}
		time.Sleep(every)
	}
}

// Hold calls check every interval for d, an invariant that must hold the
// whole time, and fails the test at the first sample where it returns an
// error.
func Hold(t testing.TB, d, every time.Duration, check func() error) {
	t.Helper()
	if every <= 0 {
		every = Every
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		if err := check(); err != nil {
			t.Fatalf("check: invariant broken: %v", err)
			return
		}
		select {
		case <-end.C:
			return
		case <-tick.C:
		}
	}
}

// That returns nil when ok, or else an error that says what is wanted, so
// a boolean condition can state what it waits for in one line.
func That(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return notYet{format: format, args: args}
}

// notYet is the error That returns: the wanted state, not reached yet.
type notYet struct {
	format string
	args   []any
}

func (e notYet) Error() string { return "not yet: " + fmt.Sprintf(e.format, e.args...) }
