package embednats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSyncSettings: the running servers report the sync setting they were
// given: every write, or every second by default instead of NATS's 2
// minutes.
func TestSyncSettings(t *testing.T) {
	for _, tt := range []struct {
		o        Options
		always   bool
		interval time.Duration
	}{{Options{}, false, time.Second}, {Options{SyncAlways: true}, true, time.Second}, {Options{SyncInterval: time.Minute}, false, time.Minute}} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		tt.o.DCs, tt.o.Dir, tt.o.Logger = []string{"dc-a1"}, t.TempDir(), zerolog.Nop()
		m, err := Start(ctx, tt.o)
		cancel()
		require.NoError(t, err)
		n, err := m.node("dc-a1")
		require.NoError(t, err)
		jsc := n.srv.JetStreamConfig()
		require.NotNil(t, jsc)
		assert.Equal(t, tt.always, jsc.SyncAlways)
		assert.Equal(t, tt.interval, jsc.SyncInterval)
		m.Close()
	}
	_, err := Start(t.Context(), Options{DCs: []string{"a"}, Dir: t.TempDir(), User: "u"})
	require.ErrorIs(t, err, ErrOptions, "a user needs a password")
}

// BenchmarkPublishSync measures acknowledged publishes of 256 bytes to a
// file stream, one at a time and 1024 in flight (as reship publishes), with
// every write synced, a sync every second (the default here) and every 2
// minutes (NATS's default).
func BenchmarkPublishSync(b *testing.B) {
	for _, o := range []Options{{SyncAlways: true}, {SyncInterval: time.Second}, {SyncInterval: 2 * time.Minute}} {
		name := "sync=always"
		if !o.SyncAlways {
			name = fmt.Sprintf("sync=%v", o.SyncInterval)
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			o.DCs, o.Dir, o.Logger = []string{"dc-a1"}, b.TempDir(), zerolog.Nop()
			m, err := Start(ctx, o)
			require.NoError(b, err)
			defer m.Close()
			nc, err := nats.Connect(m.URL("dc-a1"))
			require.NoError(b, err)
			defer nc.Close()
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
			require.NoError(b, err)
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage})
			require.NoError(b, err)
			data := make([]byte, 256)
			b.Run("sync publish", func(b *testing.B) {
				for b.Loop() {
					if _, err := js.Publish(ctx, "b.x", data); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("async publish, 1024 in flight", func(b *testing.B) {
				for b.Loop() {
					if _, err := js.PublishAsync("b.x", data, jetstream.WithStallWait(10*time.Second)); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					b.Fatal(ctx.Err())
				}
			})
		})
	}
}
