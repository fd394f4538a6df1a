package ship

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const dc = "dc1"

type rig struct {
	t       *testing.T
	js      jetstream.JetStream
	pubJS   jetstream.JetStream
	nc      *nats.Conn
	store   *state.Store
	metrics *Metrics
	cp      *Checkpointer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	mesh := harness.StartNATS(t, dc)
	nc := harness.NATSConn(t, mesh, dc)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := nats.Connect(mesh.URL(dc), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(pub.Close)
	pubJS, err := jetstream.New(pub, jetstream.WithPublishAsyncTimeout(5*time.Second))
	require.NoError(t, err)
	st := state.New(harness.EtcdClient(t), "")
	m := NewMetrics(prometheus.NewRegistry(), time.Now)
	return &rig{
		t: t, js: js, pubJS: pubJS, nc: nc, store: st, metrics: m,
		cp: NewCheckpointer(CheckpointOptions{Store: st, DC: dc, Cluster: "main", Metrics: m, Logger: zerolog.Nop()}),
	}
}

func (r *rig) pipeline(window int, ledger *Ledger) *Pipeline {
	return NewPipeline(PipelineOptions{
		JS: r.pubJS, DC: dc, Window: window, Checkpoint: r.cp, Ledger: ledger, Metrics: r.metrics, Logger: zerolog.Nop(),
	})
}

func event(gtid, keyspace string, shard int32) *drplanev1.ChangeEvent {
	return &drplanev1.ChangeEvent{
		OriginDc: dc, RequestId: fmt.Sprintf("%s/%d", gtid, shard), Gtid: gtid, Keyspace: keyspace, Shard: shard,
		Schema: "shop", Table: keyspace, Position: gtid,
	}
}

func txn(seq int) Txn {
	g := fmt.Sprintf("0-1-%d", seq)
	return Txn{GTID: g, Position: g, CapturedAt: time.Now(), Master: "db1"}
}

func TestPipelineOrderCheckpointLedger(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, EnsureStreams(ctx, r.js, dc, nil, embednats.StreamOptions{}))
	ledger := NewLedger(LedgerOptions{NATS: r.nc, DC: dc, Metrics: r.metrics, Logger: zerolog.Nop()})
	lctx, stopLedger := context.WithCancel(ctx)
	ldone := make(chan struct{})
	go func() { defer close(ldone); _ = ledger.Run(lctx) }()
	defer func() { stopLedger(); <-ldone }()

	p := r.pipeline(2, ledger)
	var all []*drplanev1.ChangeEvent
	for i := 1; i <= 20; i++ {
		var evs []*drplanev1.ChangeEvent
		if i%4 != 0 { // every fourth transaction ships nothing
			for s := range int32(i%3 + 1) {
				evs = append(evs, event(txn(i).GTID, "orders", s))
			}
		}
		all = append(all, evs...)
		require.NoError(t, p.Submit(ctx, txn(i), evs, []string{"dc2"}))
	}
	p.Close(5 * time.Second)
	require.NoError(t, p.Err())
	cp, ok := r.cp.Current()
	require.True(t, ok)
	require.Equal(t, "0-1-20", cp.Position)
	require.Equal(t, "db1", cp.Master)
	require.Zero(t, r.metrics.oldest.Load(), "nothing pending")
	require.Zero(t, testutil.ToFloat64(r.metrics.inflight))

	// The stream holds the events in submission order with their ids.
	s, err := r.js.Stream(ctx, embednats.OutStream(dc))
	require.NoError(t, err)
	for i, want := range all {
		raw, err := s.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err)
		var ev drplanev1.ChangeEvent
		require.NoError(t, proto.Unmarshal(raw.Data, &ev))
		require.True(t, proto.Equal(want, &ev))
		require.Equal(t, dc+":"+want.RequestId, raw.Header.Get(jetstream.MsgIDHeader))
		require.Equal(t, fmt.Sprintf("drplane.out.%s.orders.%d", dc, want.Shard), raw.Subject)
	}
	require.Equal(t, float64(len(all)), testutil.ToFloat64(r.metrics.published.WithLabelValues(resultStored)))

	// One CAPTURED update per event, with its sequence.
	ls, err := r.js.Stream(ctx, LedgerStream(dc))
	require.NoError(t, err)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := ls.Info(ctx)
		if err != nil {
			return err
		}
		return check.That(info.State.Msgs == uint64(len(all)), "info.State.Msgs = %v, want uint64(len(all))", info.State.Msgs)
	})
	for i, want := range all {
		raw, err := ls.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err)
		var u drplanev1.LedgerUpdate
		require.NoError(t, proto.Unmarshal(raw.Data, &u))
		require.Equal(t, want.RequestId, u.RequestId)
		require.Equal(t, uint64(i+1), u.OutboundSeq)
		require.Equal(t, []string{"dc2"}, u.Targets)
		require.Equal(t, LedgerSubject(dc, "captured"), raw.Subject)
	}

	// Publishing a transaction again is absorbed by the stream's dedup.
	p2 := r.pipeline(4, nil)
	require.NoError(t, p2.Submit(ctx, txn(1), []*drplanev1.ChangeEvent{event("0-1-1", "orders", 0), event("0-1-1", "orders", 1)}, nil))
	p2.Close(5 * time.Second)
	require.Equal(t, 2.0, testutil.ToFloat64(r.metrics.published.WithLabelValues(resultDuplicate)))
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(all)), info.State.Msgs)

	// Flush stores the position; a new checkpointer loads it.
	require.NoError(t, r.cp.Flush(ctx))
	loaded := NewCheckpointer(CheckpointOptions{Store: r.store, DC: dc, Cluster: "main", Metrics: r.metrics})
	got, ok, err := loaded.Load(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "0-1-1", got.Position, "the duplicate run moved the position back to what it acknowledged")
}

func TestPipelineStopsAtFirstFailure(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Only the orders keyspace has a stream behind it: users events fail.
	_, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: embednats.OutStream(dc), Subjects: []string{embednats.OutSubject(dc) + ".orders.>"}})
	require.NoError(t, err)
	r.cp.Advance(Checkpoint{Position: "0-1-0"})

	p := r.pipeline(8, nil)
	require.NoError(t, p.Submit(ctx, txn(1), []*drplanev1.ChangeEvent{event("0-1-1", "orders", 0)}, nil))
	require.NoError(t, p.Submit(ctx, txn(2), []*drplanev1.ChangeEvent{event("0-1-2", "users", 0)}, nil))
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error { return check.That(p.Err() != nil, "p.Err() != nil") })
	err = p.Submit(ctx, txn(3), []*drplanev1.ChangeEvent{event("0-1-3", "orders", 0)}, nil)
	require.ErrorIs(t, err, ErrPublish)
	p.Close(5 * time.Second)
	cp, _ := r.cp.Current()
	require.Equal(t, "0-1-1", cp.Position, "the checkpoint stops before the failed transaction")
	require.Equal(t, 1.0, testutil.ToFloat64(r.metrics.failed))
}

func TestCheckpointerWritesOnlyChanges(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	m := NewMetrics(prometheus.NewRegistry(), time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewCheckpointer(CheckpointOptions{Store: st, DC: dc, Cluster: "main", Metrics: m, Interval: 10 * time.Millisecond})
	_, ok, err := c.Load(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	// An empty position ("from the start") is stored too.
	c.Advance(Checkpoint{Position: ""})
	require.NoError(t, c.Flush(ctx))
	require.NoError(t, c.Flush(ctx))
	require.Equal(t, 1.0, testutil.ToFloat64(m.cpWrites.WithLabelValues("ok")))

	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(rctx) }()
	c.Advance(Checkpoint{Position: "0-1-9", GTID: "0-1-9"})
	// The write counts once its Put has returned: etcd shows the key a
	// moment earlier, and a stop then would cancel the call it is in.
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error {
		n := testutil.ToFloat64(m.cpWrites.WithLabelValues("ok"))
		return check.That(n >= 2, "two checkpoint writes counted ok (%v)", n)
	})
	cp, _, err := state.Get[Checkpoint](ctx, st, CheckpointKey(st, dc, "main"))
	require.NoError(t, err)
	require.Equal(t, "0-1-9", cp.Position)
	stop()
	<-done
	require.Equal(t, 2.0, testutil.ToFloat64(m.cpWrites.WithLabelValues("ok")), "an unchanged checkpoint is not written again")
	require.Zero(t, testutil.ToFloat64(m.cpWrites.WithLabelValues("error")))
}

func TestLedgerDropsWhenFull(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), time.Now)
	l := NewLedger(LedgerOptions{DC: dc, Buffer: 1, Metrics: m})
	l.Offer(&drplanev1.LedgerUpdate{RequestId: "a"})
	l.Offer(&drplanev1.LedgerUpdate{RequestId: "b"})
	require.Equal(t, 1.0, testutil.ToFloat64(m.ledger.WithLabelValues("dropped")))
}
