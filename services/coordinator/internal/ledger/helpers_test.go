package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
)

const (
	dcA1    = "dc-a1"
	dcA2    = "dc-a2"
	dcB1    = "dc-b1"
	waitFor = 20 * time.Second
	tick    = 20 * time.Millisecond
)

// env is three DCs: etcd with their topology, one NATS server per DC with
// its ledger stream, and an in-memory document store.
type env struct {
	st   *state.Store
	mesh *embednats.Mesh
	docs docstore.Store
	js   map[string]jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{st: state.New(harness.EtcdClient(t), ""), js: map[string]jetstream.JetStream{}}
	_, err := e.st.PutTopology(ctx, topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: dcA1, City: "city-a"}, {Name: dcA2, City: "city-a"}, {Name: dcB1, City: "city-b"}},
	}, 0)
	require.NoError(t, err)
	e.mesh = harness.StartNATS(t, dcA1, dcA2, dcB1)
	for _, dc := range e.mesh.DCs() {
		e.js[dc] = harness.JetStream(t, e.mesh, dc)
		require.NoError(t, embednats.EnsureLedger(ctx, e.js[dc], dc, embednats.StreamOptions{}))
	}
	docs, err := embedded.Open(embedded.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = docs.Close() })
	e.docs = docs
	return e
}

// running is a ledger started by start.
type running struct {
	*ledger.Ledger
	reg *prometheus.Registry
	nc  *nats.Conn
}

// start runs a ledger of a coordinator in dc until the test ends and waits
// until its index exists.
func (e *env) start(t *testing.T, dc, id string, cfg ledger.Config) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	nc := harness.NATSConn(t, e.mesh, dc)
	l, err := ledger.New(ledger.Options{
		Store: e.st, Docs: e.docs, NATS: nc, DC: dc, ID: id, Config: cfg,
		FetchWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		RequestTimeout: 5 * time.Second, Registerer: reg, Logger: zerolog.Nop(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("ledger did not stop")
		}
	})
	select {
	case <-l.Ready():
	case err := <-done:
		t.Fatalf("ledger ended before it was ready: %v", err)
	case <-time.After(waitFor):
		t.Fatal("ledger index never ready")
	}
	return &running{Ledger: l, reg: reg, nc: nc}
}

// publish stores a fact in the ledger stream of the DC that reports it.
func (e *env) publish(t *testing.T, u *drplanev1.LedgerUpdate) {
	t.Helper()
	data, err := proto.Marshal(u)
	require.NoError(t, err)
	kind := map[drplanev1.LedgerUpdate_Kind]string{
		drplanev1.LedgerUpdate_KIND_CAPTURED: "captured", drplanev1.LedgerUpdate_KIND_APPLIED: "applied",
		drplanev1.LedgerUpdate_KIND_DEAD_LETTERED: "dead_lettered", drplanev1.LedgerUpdate_KIND_RETRIED: "retried",
	}[u.GetKind()]
	_, err = e.js[u.GetDc()].Publish(t.Context(), embednats.LedgerSubject(u.GetDc())+"."+kind, data)
	require.NoError(t, err)
}

// lookup waits until the request's document satisfies ok and returns it.
func lookup(t *testing.T, l *running, origin, rid string, ok func(*ledger.Document) bool) *ledger.Document {
	t.Helper()
	var d *ledger.Document
	check.For(t, waitFor, tick, func() error {
		var err error
		d, err = l.Lookup(t.Context(), origin, rid)
		if errors.Is(err, ledger.ErrNotFound) {
			return check.That(false, "ledger document %s:%s", origin, rid)
		}
		require.NoError(t, err)
		return check.That(ok(d), "ledger document %s:%s", origin, rid)
	})
	return d
}

func capturedFact(origin, rid string, at time.Time, seq uint64, targets ...string) *drplanev1.LedgerUpdate {
	return &drplanev1.LedgerUpdate{
		OriginDc: origin, RequestId: rid, Kind: drplanev1.LedgerUpdate_KIND_CAPTURED, Dc: origin, At: timestamppb.New(at),
		Keyspace: "orders", Shard: 7, Gtid: "0-1-" + rid[:1], Targets: targets, OutboundSeq: seq,
	}
}

func fact(kind drplanev1.LedgerUpdate_Kind, origin, rid, dc string, at time.Time, errText string) *drplanev1.LedgerUpdate {
	return &drplanev1.LedgerUpdate{
		OriginDc: origin, RequestId: rid, Kind: kind, Dc: dc, At: timestamppb.New(at),
		Keyspace: "orders", Shard: 7, Error: errText,
	}
}

// others returns the DCs other than dc.
func others(dc string) []string {
	var out []string
	for _, d := range []string{dcA1, dcA2, dcB1} {
		if d != dc {
			out = append(out, d)
		}
	}
	return out
}
