package harness

import (
	"context"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func TestStartNATS(t *testing.T) {
	began := time.Now()
	m := StartNATS(t, "dc-a1", "dc-b1")
	t.Logf("2-DC NATS mesh ready in %v", time.Since(began))
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()

	js := map[string]jetstream.JetStream{}
	for _, dc := range m.DCs() {
		js[dc] = JetStream(t, m, dc)
	}
	require.NoError(t, embednats.EnsureCrossDC(ctx, js, embednats.StreamOptions{}))
	ack, err := js["dc-b1"].Publish(ctx, embednats.OutSubject("dc-b1")+".x", []byte("hello"),
		jetstream.WithMsgID("dc-b1:1"))
	require.NoError(t, err)
	require.Equal(t, embednats.OutStream("dc-b1"), ack.Stream)

	in, err := js["dc-a1"].Stream(ctx, embednats.InStream("dc-a1"))
	require.NoError(t, err)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		msg, err := in.GetMsg(ctx, 1)
		if err != nil {
			return err
		}
		return check.That(string(msg.Data) == "hello" && msg.Header.Get(jetstream.MsgIDHeader) == "dc-b1:1", "string(msg.Data) == \"hello\" && msg.Header.Get(jetstream.MsgIDHeader) == \"dc-b1:1\"")
	})
}

func TestStartNATSDefaultDC(t *testing.T) {
	m := StartNATS(t)
	require.Equal(t, []string{"dc1"}, m.DCs())
	nc := NATSConn(t, m, "dc1")
	require.True(t, nc.IsConnected())
}
