package embednats

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	require.NoError(t, err)
	return s.CachedInfo().Config
}

func TestEnsureLedgerAndDLQ(t *testing.T) {
	ctx := t.Context()
	m := startMesh(t, "dc-a1")
	js := connect(t, m, "dc-a1")

	require.NoError(t, EnsureLedger(ctx, js, "dc-a1", StreamOptions{}))
	cfg := streamConfig(t, js, LedgerStream("dc-a1"))
	assert.Equal(t, []string{"drplane.ledger.dc-a1.>"}, cfg.Subjects)
	assert.Equal(t, jetstream.FileStorage, cfg.Storage)
	assert.Equal(t, DefaultLedgerMaxAge, cfg.MaxAge)
	// Idempotent, also with other options: an existing stream keeps its configuration.
	require.NoError(t, EnsureLedger(ctx, js, "dc-a1", StreamOptions{MaxAge: time.Hour}))
	assert.Equal(t, cfg, streamConfig(t, js, LedgerStream("dc-a1")))

	ack, err := js.Publish(ctx, LedgerSubject("dc-a1")+".applied", []byte("fact"))
	require.NoError(t, err)
	assert.Equal(t, LedgerStream("dc-a1"), ack.Stream)

	require.NoError(t, EnsureDLQ(ctx, js, "dc-a1", StreamOptions{}))
	require.NoError(t, EnsureDLQ(ctx, js, "dc-a1", StreamOptions{}))
	ack, err = js.Publish(ctx, DLQSubject("dc-a1")+".dc-b1", []byte("poison"))
	require.NoError(t, err)
	assert.Equal(t, DLQStream("dc-a1"), ack.Stream)
	assert.Zero(t, streamConfig(t, js, DLQStream("dc-a1")).MaxAge, "dead letters are kept until handled")

	require.ErrorIs(t, EnsureLedger(ctx, js, "a.b", StreamOptions{}), ErrStreams)
	require.ErrorIs(t, EnsureDLQ(ctx, js, "", StreamOptions{}), ErrStreams)
}

func TestEnsureLedgerOverOtherCreator(t *testing.T) {
	ctx := t.Context()
	m := startMesh(t, "dc-a1")
	js := connect(t, m, "dc-a1")
	// Another service created the stream first, narrower and in memory.
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: LedgerStream("dc-a1"), Subjects: []string{LedgerSubject("dc-a1") + ".captured"},
		Storage: jetstream.MemoryStorage, MaxAge: time.Hour,
	})
	require.NoError(t, err)
	require.NoError(t, EnsureLedger(ctx, js, "dc-a1", StreamOptions{}))
	cfg := streamConfig(t, js, LedgerStream("dc-a1"))
	assert.Equal(t, []string{"drplane.ledger.dc-a1.>"}, cfg.Subjects, "the wider subject replaces the one it covers")
	assert.Equal(t, jetstream.MemoryStorage, cfg.Storage)
	assert.Equal(t, time.Hour, cfg.MaxAge)
}

func TestEnsureInboundReplay(t *testing.T) {
	ctx := t.Context()
	m := startMesh(t, "dc-a1", "dc-b1")
	js := connect(t, m, "dc-a1")
	require.ErrorIs(t, EnsureInboundReplay(ctx, js, "dc-a1"), ErrStreams, "the inbound stream must exist")

	peers := []string{"dc-b1"}
	require.NoError(t, EnsureOutbound(ctx, connect(t, m, "dc-b1"), "dc-b1", []string{"dc-a1"}, StreamOptions{}))
	requireInbound(ctx, t, js, "dc-a1", peers)
	require.NoError(t, EnsureInboundReplay(ctx, js, "dc-a1"))
	require.NoError(t, EnsureInboundReplay(ctx, js, "dc-a1"))
	cfg := streamConfig(t, js, InStream("dc-a1"))
	assert.Equal(t, []string{"drplane.replay.dc-a1.>"}, cfg.Subjects)
	require.Len(t, cfg.Sources, 1, "the sources stay")

	ack, err := js.Publish(ctx, ReplaySubject("dc-a1")+".dc-b1", []byte("again"))
	require.NoError(t, err)
	assert.Equal(t, InStream("dc-a1"), ack.Stream)

	// EnsureInbound resets the subjects; EnsureInboundReplay puts them back.
	requireInbound(ctx, t, js, "dc-a1", peers)
	assert.Empty(t, streamConfig(t, js, InStream("dc-a1")).Subjects)
	require.NoError(t, EnsureInboundReplay(ctx, js, "dc-a1"))
	assert.Equal(t, []string{"drplane.replay.dc-a1.>"}, streamConfig(t, js, InStream("dc-a1")).Subjects)
}

// requireInbound ensures dc's inbound stream, every peer sourced.
func requireInbound(ctx context.Context, t *testing.T, js jetstream.JetStream, dc string, peers []string) {
	t.Helper()
	pending, err := EnsureInbound(ctx, js, dc, peers, StreamOptions{})
	require.NoError(t, err)
	require.Empty(t, pending)
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, sub string
		want         bool
	}{
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.>", "a.>", true},
		{"a.*", "a.b", true},
		{"a.*", "a.*", true},
		{"a.*", "a.>", false},
		{"a.*", "a.b.c", false},
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.b", "a.*", false},
		{"a.b.c", "a.b", false},
	} {
		assert.Equal(t, tc.want, covers(tc.pattern, tc.sub), "%s covers %s", tc.pattern, tc.sub)
	}
}
