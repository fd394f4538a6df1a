package harness

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/embedetcd"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const etcdStartTimeout = 30 * time.Second

// StartEtcd starts an in-process etcd cluster of members members (at least 1) on free loopback ports under
// t.TempDir() and waits until every member serves. Its clients and members are closed in t.Cleanup.
func StartEtcd(t testing.TB, members int) *embedetcd.Cluster {
	t.Helper()
	if members < 1 {
		members = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	c, err := embedetcd.Start(ctx, embedetcd.Options{
		Dir:     t.TempDir(),
		Members: members,
		Logger:  partLogger(t, zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatalf("harness: start etcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// EtcdClient starts a one-member etcd cluster and returns a client for it; both are closed in t.Cleanup.
func EtcdClient(t testing.TB) *clientv3.Client {
	t.Helper()
	return EtcdClientFor(t, StartEtcd(t, 1))
}

// EtcdClientFor returns a new client for all of c's members; c closes it when it is cleaned up.
func EtcdClientFor(t testing.TB, c *embedetcd.Cluster) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatalf("harness: etcd client: %v", err)
	}
	return cli
}

// partLogger returns a logger for parts that run goroutines of their own (etcd, NATS, toxiproxy): lines at
// level or above go to the test log until the test's cleanup ends, and are dropped after that, since
// logging through t once the test has completed panics.
func partLogger(t testing.TB, level zerolog.Level) zerolog.Logger {
	w := &guardedWriter{out: zerolog.NewTestWriter(t)}
	t.Cleanup(w.close) // registered before the part's own cleanup, so it runs after the part has stopped
	out := zerolog.ConsoleWriter{Out: w, NoColor: true, PartsOrder: []string{zerolog.LevelFieldName, zerolog.MessageFieldName}}
	stamp := zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		e.Str("at", time.Now().Format("15:04:05.000"))
	})
	return zerolog.New(out).Level(level).Hook(stamp)
}

// guardedWriter forwards writes to out until close.
type guardedWriter struct {
	mu     sync.Mutex
	out    zerolog.TestWriter
	closed bool
}

func (w *guardedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	return w.out.Write(p)
}

func (w *guardedWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
