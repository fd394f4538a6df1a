package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesUpToMaxAndResets(t *testing.T) {
	b := New(time.Millisecond, 4*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Wait returns at once on a done context; only the delays matter here
	var got []time.Duration
	for range 4 {
		got = append(got, b.cur)
		b.Wait(ctx)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delay %d = %s, want %s", i, got[i], want[i])
		}
	}
	b.Reset()
	if b.cur != time.Millisecond {
		t.Fatalf("after Reset: %s", b.cur)
	}
}
