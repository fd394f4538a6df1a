package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "drplane_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	s := New(Options{Addr: "127.0.0.1:0", Registry: reg})
	failing := errors.New("etcd: no quorum")
	s.AddReadiness("etcd", func(context.Context) error { return failing })
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "no quorum") {
		t.Fatalf("readyz while failing = %d %q", code, body)
	}
	s.AddReadiness("etcd", func(context.Context) error { return nil })
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("readyz when ready = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "drplane_test_total 1") {
		t.Fatalf("metrics = %d %q", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestReadyzExpect: a check named in Options.Expect fails /readyz until
// it is registered, so a probe between Listen and the registration cannot
// see the process ready with only its early checks.
func TestReadyzExpect(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Expect: []string{"apply"}, CacheFor: -1})
	s.AddReadiness("etcd", func(context.Context) error { return nil })
	rep := s.ready(context.Background())
	if rep.Ready || rep.Failed["apply"] != errNotRegistered.Error() {
		t.Fatalf("before apply is registered: %+v", rep)
	}
	s.AddReadiness("apply", func(context.Context) error { return nil })
	if rep := s.ready(context.Background()); !rep.Ready {
		t.Fatalf("after apply is registered: %+v", rep)
	}
}

// TestReadyzCached: /readyz called in a loop runs the checks once per
// CacheFor, a failure included; a check added meanwhile is run at once.
func TestReadyzCached(t *testing.T) {
	var (
		mu    sync.Mutex
		now   = time.Unix(1000, 0)
		calls atomic.Int64
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := New(Options{Addr: "127.0.0.1:0", CacheFor: time.Second, Now: clock})
	s.AddReadiness("mysql-master", func(context.Context) error { calls.Add(1); return errors.New("down") })
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	base := "http://" + s.Addr()

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if code, _ := get(t, base+"/readyz"); code != 503 {
				t.Errorf("readyz = %d, want 503", code)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 calls ran the check %d times, want 1", n)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	get(t, base+"/readyz")
	if n := calls.Load(); n != 2 {
		t.Fatalf("after CacheFor the check ran %d times in all, want 2", n)
	}
	s.AddReadiness("etcd", func(context.Context) error { return nil })
	get(t, base+"/readyz")
	if n := calls.Load(); n != 3 {
		t.Fatalf("a new check runs them all: %d runs, want 3", n)
	}
}
