package lab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/config"
)

func TestNATSSync(t *testing.T) {
	always, interval, err := (&Config{NATSSync: DefaultConfig().NATSSync}).natsSync()
	require.NoError(t, err)
	require.True(t, always, "the lab flushes JetStream before each acknowledgement by default")
	require.Zero(t, interval)

	for _, tc := range []struct {
		file     string
		always   bool
		interval time.Duration
		bad      bool
	}{
		{file: "nats_sync: always\n", always: true},
		{file: "nats_sync: 1s\n", interval: time.Second},
		{file: "nats_sync: 250ms\n", interval: 250 * time.Millisecond},
		{file: "nats_sync: 5ms\n", bad: true},
		{file: "nats_sync: 3m\n", bad: true},
		{file: "nats_sync: sometimes\n", bad: true},
		{file: "nats_sync: \"\"\n", bad: true},
	} {
		path := filepath.Join(t.TempDir(), "lab.yaml")
		require.NoError(t, os.WriteFile(path, []byte(tc.file), 0o600))
		cfg, err := LoadConfig(path)
		if tc.bad {
			var ce *config.Error
			require.True(t, errors.As(err, &ce), "%q: %v", tc.file, err)
			require.Equal(t, "nats_sync", ce.Field, tc.file)
			continue
		}
		require.NoError(t, err, tc.file)
		always, interval, err := cfg.natsSync()
		require.NoError(t, err, tc.file)
		require.Equal(t, tc.always, always, tc.file)
		require.Equal(t, tc.interval, interval, tc.file)
	}
}
