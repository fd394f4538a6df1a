package embednats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func startMesh(t *testing.T, dcs ...string) *Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	began := time.Now()
	m, err := Start(ctx, Options{DCs: dcs, Dir: t.TempDir(), Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Logf("%d-DC mesh ready in %v", len(dcs), time.Since(began))
	t.Cleanup(m.Close)
	return m
}

func connect(t *testing.T, m *Mesh, dc string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(m.URL(dc), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// streamMsgs returns a stream's message count, or -1 if it cannot be read right now.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, dc string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ack, err := js.Publish(ctx, OutSubject(dc)+".orders", fmt.Appendf(nil, "change %d", i),
			jetstream.WithMsgID(fmt.Sprintf("%s:%d", dc, i)))
		require.NoError(t, err)
		require.False(t, ack.Duplicate)
	}
}

// requireExactly checks that stream holds ids origin:0 … origin:n-1, each once, in publish order.
func requireExactly(ctx context.Context, t *testing.T, js jetstream.JetStream, stream, origin string, n int) {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, info.State.Msgs)
	require.EqualValues(t, n, info.State.LastSeq, "a duplicate was stored and removed, or sequence gaps")
	for seq := uint64(1); seq <= uint64(n); seq++ {
		msg, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%s:%d", origin, seq-1), msg.Header.Get(jetstream.MsgIDHeader))
	}
}

func TestCrossDCCatchUp(t *testing.T) {
	for _, ephemeral := range []bool{false, true} {
		name := "durable"
		if ephemeral {
			name = "ephemeral"
		}
		t.Run(name, func(t *testing.T) { testCrossDC(t, StreamOptions{Ephemeral: ephemeral}) })
	}
}

func testCrossDC(t *testing.T, opts StreamOptions) {
	began := time.Now()
	ctx := t.Context()
	m := startMesh(t, "dc-a1", "dc-a2", "dc-b1")
	js := map[string]jetstream.JetStream{}
	for _, dc := range m.DCs() {
		js[dc] = connect(t, m, dc)
	}
	require.NoError(t, EnsureCrossDC(ctx, js, opts))
	// Idempotent: a second run changes nothing and does not fail.
	require.NoError(t, EnsureCrossDC(ctx, js, opts))

	publish(ctx, t, js["dc-a1"], "dc-a1", 0, 100)
	for _, dc := range []string{"dc-a2", "dc-b1"} {
		check.For(t, 15*time.Second, 20*time.Millisecond, func() error { return check.That(streamMsgs(ctx, js[dc], InStream(dc)) == 100, "IN of %s", dc) })
	}
	require.Equal(t, 0, streamMsgs(ctx, js["dc-a1"], InStream("dc-a1")), "a DC must not receive its own changes")

	// A repeated id inside the dedup window is not stored again.
	ack, err := js["dc-a1"].Publish(ctx, OutSubject("dc-a1")+".orders", []byte("again"),
		jetstream.WithMsgID("dc-a1:5"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate)

	require.NoError(t, m.Stop("dc-b1"))
	require.False(t, m.Running("dc-b1"))
	publish(ctx, t, js["dc-a1"], "dc-a1", 100, 200)
	check.For(t, 15*time.Second, 20*time.Millisecond, func() error {
		return check.That(streamMsgs(ctx, js["dc-a2"], InStream("dc-a2")) == 200, "dc-a2 keeps receiving while dc-b1 is down")
	})

	restarted := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, m.Restart(rctx, "dc-b1"))
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		return check.That(streamMsgs(ctx, js["dc-b1"], InStream("dc-b1")) == 200, "dc-b1 catches up after restart")
	})
	t.Logf("dc-b1 caught up %v after restart", time.Since(restarted))

	requireExactly(ctx, t, js["dc-b1"], InStream("dc-b1"), "dc-a1", 200)
	requireExactly(ctx, t, js["dc-a2"], InStream("dc-a2"), "dc-a1", 200)

	if opts.Ephemeral {
		// The other DCs' ephemeral sourcing consumers died with dc-b1's server; they are recreated only
		// after the server's stall detector fires (10 s and more), which is why durable sourcing is the
		// default. Not waited for here.
		t.Logf("cross-DC test body took %v", time.Since(began))
		return
	}
	// Changes flow from the restarted DC too. A source whose consumer reset request was lost while dc-b1
	// restarted waits out the server's 5 s reset timeout, so allow for that.
	published := time.Now()
	publish(ctx, t, js["dc-b1"], "dc-b1", 0, 10)
	for dc, want := range map[string]int{"dc-a1": 10, "dc-a2": 210} {
		check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
			return check.That(streamMsgs(ctx, js[dc], InStream(dc)) == want, "IN of %s after dc-b1 published", dc)
		})
	}
	t.Logf("dc-b1's changes reached both other DCs %v after publishing", time.Since(published))
	t.Logf("cross-DC test body took %v", time.Since(began))
}

func TestMeshOptions(t *testing.T) {
	_, err := Start(t.Context(), Options{Dir: t.TempDir()})
	require.ErrorIs(t, err, ErrOptions)
	_, err = Start(t.Context(), Options{DCs: []string{"a.b"}, Dir: t.TempDir()})
	require.ErrorIs(t, err, ErrOptions)
	_, err = Start(t.Context(), Options{DCs: []string{"a", "a"}, Dir: t.TempDir()})
	require.ErrorIs(t, err, ErrOptions)
}

func TestMeshRestartKeepsURL(t *testing.T) {
	m := startMesh(t, "x")
	url := m.URL("x")
	require.NotEmpty(t, url)
	require.Empty(t, m.URL("nope"))
	require.ErrorIs(t, m.Stop("nope"), ErrUnknownDC)
	require.NoError(t, m.Stop("x"))
	_, err := nats.Connect(url, nats.Timeout(500*time.Millisecond))
	require.Error(t, err, "a stopped DC must not accept clients")
	require.NoError(t, m.Restart(t.Context(), "x"))
	require.Equal(t, url, m.URL("x"))
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	nc.Close()
}
