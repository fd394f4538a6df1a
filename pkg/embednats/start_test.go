package embednats

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
)

// TestInboundWaitsForTheSourcingConsumer: EnsureInbound leaves out a peer
// whose outbound stream has no consumer for the DC yet, sources it once
// EnsureOutbound created one, and keeps it as a source when the peer's
// server is down; everything the peer published before arrives from its
// first message.
func TestInboundWaitsForTheSourcingConsumer(t *testing.T) {
	ctx := t.Context()
	m := startMesh(t, "dc-a1", "dc-b1")
	a, b := connect(t, m, "dc-a1"), connect(t, m, "dc-b1")

	pending, err := EnsureInbound(ctx, a, "dc-a1", []string{"dc-b1"}, StreamOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"dc-b1"}, pending, "no outbound stream in dc-b1 yet")
	assert.Empty(t, streamConfig(t, a, InStream("dc-a1")).Sources)

	// The stream without its consumer still waits.
	_, err = b.CreateStream(ctx, jetstream.StreamConfig{Name: OutStream("dc-b1"), Subjects: []string{OutSubject("dc-b1") + ".>"}})
	require.NoError(t, err)
	publish(ctx, t, b, "dc-b1", 0, 20)
	pending, err = EnsureInbound(ctx, a, "dc-a1", []string{"dc-b1"}, StreamOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"dc-b1"}, pending, "no consumer TO_dc_a1 yet")

	require.NoError(t, EnsureOutbound(ctx, b, "dc-b1", []string{"dc-a1"}, StreamOptions{}))
	requireInbound(ctx, t, a, "dc-a1", []string{"dc-b1"})
	require.Len(t, streamConfig(t, a, InStream("dc-a1")).Sources, 1)
	publish(ctx, t, b, "dc-b1", 20, 40)
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		return check.That(streamMsgs(ctx, a, InStream("dc-a1")) == 40, "IN of dc-a1 has dc-b1's 40 changes")
	})
	requireExactly(ctx, t, a, InStream("dc-a1"), "dc-b1", 40)

	// A source stays a source while its DC is down.
	require.NoError(t, m.Stop("dc-b1"))
	requireInbound(ctx, t, a, "dc-a1", []string{"dc-b1"})
	require.Len(t, streamConfig(t, a, InStream("dc-a1")).Sources, 1)

	// Ephemeral sources need no consumer on the origin.
	pending, err = EnsureInbound(ctx, connect(t, m, "dc-a1"), "dc-a1", []string{"dc-b1", "dc-c1"}, StreamOptions{Ephemeral: true})
	require.NoError(t, err)
	assert.Empty(t, pending)
}
