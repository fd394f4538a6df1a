package check

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the failure instead of
// ending the goroutine, so the helpers' own failures can be asserted.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	For(t, 5*time.Second, time.Millisecond, func() error {
		n++
		return That(n >= 3, "n = %d, want 3", n)
	})
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestForReportsTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	For(r, 30*time.Millisecond, time.Millisecond, func() error {
		n++
		return fmt.Errorf("attempt %d: %w", n, errors.ErrUnsupported)
	})
	want := fmt.Sprintf("attempt %d", n)
	if !strings.Contains(r.failed, want) || !strings.Contains(r.failed, "after 30ms") {
		t.Fatalf("failure %q does not name the last error %q and the timeout", r.failed, want)
	}
}

func TestHoldSamplesTheWholeWindow(t *testing.T) {
	n := 0
	began := time.Now()
	Hold(t, 50*time.Millisecond, 5*time.Millisecond, func() error { n++; return nil })
	if time.Since(began) < 50*time.Millisecond || n < 2 {
		t.Fatalf("held %s with %d samples", time.Since(began), n)
	}
}

func TestHoldFailsAtTheFirstBrokenSample(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Hold(r, 5*time.Second, time.Millisecond, func() error {
		n++
		return That(n < 3, "sample %d broke it", n)
	})
	if n != 3 || !strings.Contains(r.failed, "sample 3 broke it") {
		t.Fatalf("after %d samples: failure %q", n, r.failed)
	}
}
