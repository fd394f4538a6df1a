package embedetcd

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for the embedded server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestMemberRunWithDebugLogs(t *testing.T) {
	peers, err := PickPeers([]string{"solo"})
	require.NoError(t, err)
	var logs lockedBuffer
	m, err := StartMember(MemberOptions{
		Dir:    t.TempDir(),
		Name:   "solo",
		Peers:  peers,
		Logger: zerolog.New(&logs).Level(zerolog.InfoLevel),
		Debug:  true,
	})
	require.NoError(t, err)
	t.Cleanup(m.Close)
	require.Equal(t, peers[0].ClientURL, m.ClientURL())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.WaitReady(ctx))
	require.Contains(t, logs.String(), `"level":"info"`, "debug forwards the server's logs")

	runCtx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	require.False(t, m.Running())
	require.ErrorIs(t, m.WaitReady(ctx), ErrStopped)
}
