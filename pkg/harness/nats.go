package harness

import (
	"context"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const natsStartTimeout = 30 * time.Second

// StartNATS starts one in-process JetStream server per DC (default: a single DC "dc1"), each its own
// JetStream domain with its store under t.TempDir(), linked by leafnodes; see embednats. The servers are
// shut down in t.Cleanup.
func StartNATS(t testing.TB, dcs ...string) *embednats.Mesh {
	t.Helper()
	return StartNATSWith(t, embednats.Options{DCs: dcs})
}

// StartNATSWith is StartNATS with the mesh's options (its sync setting, say); DCs default to "dc1", Dir to
// t.TempDir(); the servers log to the test's log at warnings.
func StartNATSWith(t testing.TB, o embednats.Options) *embednats.Mesh {
	t.Helper()
	if len(o.DCs) == 0 {
		o.DCs = []string{"dc1"}
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Logger = partLogger(t, zerolog.WarnLevel)
	ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
	defer cancel()
	m, err := embednats.Start(ctx, o)
	if err != nil {
		t.Fatalf("harness: start nats: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// NATSConn connects to dc's server; the connection keeps reconnecting while the DC is down and is closed in
// t.Cleanup.
func NATSConn(t testing.TB, m *embednats.Mesh, dc string) *nats.Conn {
	t.Helper()
	url := m.URL(dc)
	if url == "" {
		t.Fatalf("harness: nats: unknown DC %q", dc)
	}
	nc, err := nats.Connect(url, nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("harness: nats connect %s: %v", dc, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on dc's server (its own domain), over a connection from NATSConn.
func JetStream(t testing.TB, m *embednats.Mesh, dc string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(NATSConn(t, m, dc))
	if err != nil {
		t.Fatalf("harness: jetstream %s: %v", dc, err)
	}
	return js
}
