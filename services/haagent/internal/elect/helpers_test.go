package elect_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/elect"
)

const (
	dc       = "dc-a1"
	runStops = 15 * time.Second // bound on Run returning after its context ends
)

// group is the agents of one test. It checks that no two lead callbacks
// ever run at the same time.
type group struct {
	t       *testing.T
	st      *state.Store
	checker *clientv3.Client // a direct client the test inspects etcd with
	active  atomic.Int32
	overlap atomic.Bool
	// mayOverlap is set by tests that revoke a leader's lease from outside:
	// etcd then ends one tenure and starts the next at the same revision,
	// and the two processes learn of it independently, so their callbacks
	// may overlap by a few milliseconds (the fencing token is what protects
	// writes then).
	mayOverlap bool
}

func newGroup(t *testing.T, checker *clientv3.Client) *group {
	g := &group{t: t, st: state.New(checker, ""), checker: checker}
	t.Cleanup(func() {
		if g.overlap.Load() && !g.mayOverlap {
			t.Error("two agents led at the same time")
		}
	})
	return g
}

// tenure is one leadership as the lead callback saw it.
type tenure struct {
	l     elect.Leadership
	ended chan struct{} // closed when lead returns
}

// fenceCall is one SelfFence call.
type fenceCall struct {
	at     time.Time
	reason string
	lease  clientv3.LeaseID
	ttl    int64 // TimeToLive of the lease, asked from the checker during the call
	ttlErr error
}

// agent is one elector running in the test, as one agent process would.
type agent struct {
	g      *group
	id     string
	cli    *clientv3.Client
	el     *elect.Elector
	reg    *prometheus.Registry
	cancel context.CancelCauseFunc
	done   chan error

	mu      sync.Mutex
	tenures []*tenure
	fences  []fenceCall
}

// start runs an elector with id on cli until the test ends (or stop).
func (g *group) start(id string, cli *clientv3.Client, tune func(*elect.Options)) *agent {
	t := g.t
	t.Helper()
	a := &agent{g: g, id: id, cli: cli, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	o := elect.Options{
		Client: cli, Store: state.New(cli, ""), DC: dc, ID: id, TTL: 2 * time.Second,
		SelfFence: a.selfFence, Registry: a.reg,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Str("agent", id).Logger(),
	}
	if tune != nil {
		tune(&o)
	}
	el, err := elect.New(o)
	require.NoError(t, err)
	a.el = el
	ctx, cancel := context.WithCancelCause(context.Background())
	a.cancel = cancel
	go func() { a.done <- el.Run(ctx, a.lead) }()
	t.Cleanup(func() { a.stop(nil) })
	return a
}

func (a *agent) lead(l elect.Leadership) error {
	if a.g.active.Add(1) > 1 {
		a.g.overlap.Store(true)
	}
	ten := &tenure{l: l, ended: make(chan struct{})}
	a.mu.Lock()
	a.tenures = append(a.tenures, ten)
	a.mu.Unlock()
	<-l.Ctx.Done()
	a.g.active.Add(-1)
	close(ten.ended)
	return nil
}

func (a *agent) selfFence(ctx context.Context, reason string) {
	call := fenceCall{at: time.Now(), reason: reason}
	if ten := a.last(); ten != nil {
		call.lease = ten.l.Lease
		resp, err := a.g.checker.TimeToLive(ctx, ten.l.Lease)
		call.ttlErr = err
		if err == nil {
			call.ttl = resp.TTL
		}
	}
	a.mu.Lock()
	a.fences = append(a.fences, call)
	a.mu.Unlock()
}

// stop cancels Run with cause and waits for it to return nil.
func (a *agent) stop(cause error) {
	a.cancel(cause)
	a.wait()
}

func (a *agent) wait() {
	t := a.g.t
	t.Helper()
	select {
	case err, ok := <-a.done:
		if ok {
			require.NoError(t, err)
			close(a.done)
		}
	case <-time.After(runStops):
		t.Fatalf("%s: Run did not return within %s", a.id, runStops)
	}
}

func (a *agent) last() *tenure {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tenures) == 0 {
		return nil
	}
	return a.tenures[len(a.tenures)-1]
}

// leads reports whether a leads and its lead callback is running.
func (a *agent) leads() bool {
	if !a.el.IsLeader() {
		return false
	}
	ten := a.last()
	if ten == nil {
		return false
	}
	select {
	case <-ten.ended:
		return false
	default:
		return true
	}
}

func (a *agent) tenureCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tenures)
}

func (a *agent) fenceCalls() []fenceCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]fenceCall(nil), a.fences...)
}

// metric returns the value of the gauge or counter name, or -1.
func (a *agent) metric(name string) float64 {
	mfs, err := a.reg.Gather()
	require.NoError(a.g.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// leader asks etcd who holds the election ("" when nobody does).
func (g *group) leader(a *agent) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	id, err := a.el.Leader(ctx)
	if errors.Is(err, elect.ErrNoLeader) {
		return ""
	}
	require.NoError(g.t, err)
	return id
}

// candidacies returns the candidacy keys in the election.
func (g *group) candidacies() []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := g.checker.Get(ctx, g.st.Prefix("agents", dc, "election"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	require.NoError(g.t, err)
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// oneLeader waits until exactly one of a and b leads, etcd names it, and
// both are candidates; it returns the leader and the standby.
func (g *group) oneLeader(a, b *agent) (leader, standby *agent) {
	g.t.Helper()
	check.For(g.t, 10*time.Second, 5*time.Millisecond, func() error {
		if a.leads() == b.leads() {
			return check.That(false, "exactly one leader")
		}
		leader, standby = a, b
		if b.leads() {
			leader, standby = b, a
		}
		return check.That(g.leader(a) == leader.id && len(g.candidacies()) == 2, "exactly one leader")
	})
	require.False(g.t, standby.el.IsLeader())
	return leader, standby
}

// dial returns a client for endpoints that reconnects quickly after an
// outage (the gRPC default backs off up to two minutes); closed at cleanup.
func dial(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
