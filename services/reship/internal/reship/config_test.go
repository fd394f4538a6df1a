package reship

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
)

func validConfig() *Config {
	c := DefaultConfig()
	c.DC = "dc-a"
	c.NATSURL = "nats://127.0.0.1:4222"
	c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	c.MySQL.User = "repl"
	return c
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, validConfig().Validate())
	withMonitor := validConfig()
	withMonitor.NATSMonitorURL = "http://127.0.0.1:8222"
	require.NoError(t, withMonitor.Validate())
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"start", func(c *Config) { c.Start = "latest" }},
		{"window", func(c *Config) { c.Window = 0 }},
		{"checkpoint_interval", func(c *Config) { c.CheckpointInterval = 0 }},
		{"server_id", func(c *Config) { c.ServerID = 1 << 32 }},
		{"publish_timeout", func(c *Config) { c.PublishTimeout = 0 }},
		{"ledger_buffer", func(c *Config) { c.LedgerBuffer = 0 }},
		{"outbound.max_age", func(c *Config) { c.Outbound.MaxAge = -1 }},
		{"mysql.user", func(c *Config) { c.MySQL.User = "" }},
		{"nats_monitor_url", func(c *Config) { c.NATSMonitorURL = "127.0.0.1:8222" }},
		{"nats_monitor_url", func(c *Config) { c.NATSMonitorURL = "nats://127.0.0.1:8222" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := validConfig()
			tc.mod(c)
			err := c.Validate()
			var ce *config.Error
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, tc.field, ce.Field)
		})
	}
}

func TestServerID(t *testing.T) {
	id := DefaultServerID("dc-a", "main")
	require.Equal(t, id, DefaultServerID("dc-a", "main"), "stable")
	require.NotEqual(t, id, DefaultServerID("dc-b", "main"))
	require.NotEqual(t, id, DefaultServerID("dc-a", "other"))
	require.GreaterOrEqual(t, id, uint32(1<<31))
	c := validConfig()
	require.Equal(t, id, c.EffectiveServerID())
	c.ServerID = 77
	require.Equal(t, uint32(77), c.EffectiveServerID())
}

func TestHelpAndCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := daemon.MainContext(context.Background(), Spec(DefaultConfig()), []string{"--help"}, &out, &errOut)
	require.Equal(t, daemon.ExitOK, code)
	help := out.String()
	for _, want := range []string{"reship", "binlog_row_metadata=FULL", "--start", "--window", "--checkpoint-interval", "--server-id", "--mysql-user", "republish"} {
		require.Contains(t, help, want)
	}
	require.NotContains(t, help, "NOT implemented")
	require.True(t, Spec(DefaultConfig()).LogicImplemented)

	out.Reset()
	code = daemon.MainContext(context.Background(), Spec(DefaultConfig()), []string{"--check-config", "--dc", "dc-a",
		"--etcd", "http://127.0.0.1:2379", "--nats", "nats://127.0.0.1:4222", "--mysql-user", "repl", "--start", "earliest"}, &out, &errOut)
	require.Equal(t, daemon.ExitOK, code, errOut.String())
	require.Contains(t, out.String(), "start: earliest")
	require.Contains(t, out.String(), "checkpoint_interval: 100ms")

	code = daemon.MainContext(context.Background(), Spec(DefaultConfig()), []string{"--check-config", "--dc", "dc-a",
		"--etcd", "http://127.0.0.1:2379", "--nats", "nats://127.0.0.1:4222", "--mysql-user", "repl", "--start", "latest"}, &out, &errOut)
	require.Equal(t, daemon.ExitConfig, code)
	require.Contains(t, errOut.String(), "start")
}
