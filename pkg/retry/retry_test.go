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

func TestSleepReportsWhetherTheWholeDelayPassed(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep on a live context reported that it ended early")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a done context reported that the hour passed")
	}
}

func TestWaitOrEndsWhenWoken(t *testing.T) {
	b := New(time.Hour, time.Hour)
	wake := make(chan struct{})
	close(wake)
	if !b.WaitOr(context.Background(), wake) {
		t.Fatal("WaitOr woken on a live context reported that ctx ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait on a done context reported that the delay passed")
	}
}
