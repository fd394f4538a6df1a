package router_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/router/routertest"
)

const (
	dcA1 = "dc-a1"
	dcA2 = "dc-a2"
	dcB1 = "dc-b1"
	// waitFor bounds every poll of these tests.
	waitFor = 10 * time.Second
	tick    = 2 * time.Millisecond
)

// started is a router whose Run goes on until the test ends.
type started struct {
	*router.Router
	reg *prometheus.Registry
}

// startRouter builds a router on a connection to srv (o.Conn, Registry and
// Logger are filled in unless set) and runs it until the test ends; Run's
// result is checked then.
func startRouter(t *testing.T, srv *routertest.Server, o router.Options) started {
	t.Helper()
	if o.Conn == nil {
		o.Conn = srv.Dial()
	}
	if o.DC == "" {
		o.DC = dcA1
	}
	reg := prometheus.NewRegistry()
	if o.Registry == nil {
		o.Registry = reg
	}
	o.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	if o.MinBackoff == 0 {
		o.MinBackoff = 10 * time.Millisecond
		o.MaxBackoff = 50 * time.Millisecond
	}
	r, err := router.New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return %s after its context ended", waitFor)
		}
	})
	return started{Router: r, reg: reg}
}

// waitReady waits for r to be ready.
func waitReady(t *testing.T, r *router.Router) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(waitFor):
		t.Fatalf("router not ready after %s", waitFor)
	}
}

// waitRevision polls until the keyspace's table is at rev.
func waitRevision(t *testing.T, r *router.Router, keyspace string, rev int64) {
	t.Helper()
	check.For(t, waitFor, tick, func() error {
		return check.That(r.Revision(keyspace) == rev, "keyspace %s: revision %d, want %d", keyspace, r.Revision(keyspace), rev)
	})
}

// metric returns the value of the counter or gauge name whose labels
// include want, 0 when there is none.
func metric(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := 0
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
					n++
				}
			}
			if n == len(want) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
