package bus_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
)

func TestConnectCheckAndReconnect(t *testing.T) {
	mesh := harness.StartNATS(t, "dc-a1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	nc, err := bus.Connect(ctx, mesh.URL("dc-a1"), "bus-test", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	assert.Equal(t, "bus-test", nc.Opts.Name)
	alive := bus.Check(nc)
	require.NoError(t, alive(ctx))

	// The connection carries traffic.
	sub, err := nc.SubscribeSync("bus.test")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("bus.test", []byte("x")))
	msg, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "x", string(msg.Data))

	// The server goes away: the check fails with the sentinel.
	require.NoError(t, mesh.Stop("dc-a1"))
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		return check.That(alive(ctx) != nil, "Check must notice the lost connection")
	})
	require.ErrorIs(t, alive(ctx), bus.ErrDisconnected)

	// It comes back on the same address: the client reconnects by itself.
	require.NoError(t, mesh.Restart(ctx, "dc-a1"))
	check.For(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := alive(ctx); err != nil {
			return fmt.Errorf("the client must reconnect after the server returns: %w", err)
		}
		return nil
	})
}

func TestConnectFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "nats://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	_, err = bus.Connect(t.Context(), dead, "bus-test", zerolog.Nop())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bus: connect "+dead)

	// A context that ended while dialling wins over a connection.
	mesh := harness.StartNATS(t, "dc-a1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	nc, err := bus.Connect(ctx, mesh.URL("dc-a1"), "bus-test", zerolog.Nop())
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, nc)
}
