package coordinator_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

func validConfig() *coordinator.Config {
	c := coordinator.DefaultConfig()
	c.DC = "dc-a1"
	c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	c.Auth.Tokens = []auth.Token{{Name: "ops", Role: "admin", SHA256: auth.Hash("t")}}
	c.Audit.Dir = "/var/lib/drplane/audit"
	return c
}

func TestConfigValidate(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, []byte("x"), 0o600))

	tests := []struct {
		name   string
		mutate func(*coordinator.Config)
		field  string // empty: valid
		msg    string
	}{
		{name: "defaults plus the required fields", mutate: func(*coordinator.Config) {}},
		{name: "free ports", mutate: func(c *coordinator.Config) { c.API.GRPCAddr, c.API.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0" }},
		{name: "same api address", field: "api.http_addr", msg: "same address as api.grpc_addr",
			mutate: func(c *coordinator.Config) { c.API.HTTPAddr = c.API.GRPCAddr }},
		{name: "bad grpc address", field: "api.grpc_addr", msg: "not host:port",
			mutate: func(c *coordinator.Config) { c.API.GRPCAddr = "7700" }},
		{name: "bad http address", field: "api.http_addr", msg: "not host:port",
			mutate: func(c *coordinator.Config) { c.API.HTTPAddr = "" }},
		{name: "no tokens", field: "auth.tokens", msg: "at least one token",
			mutate: func(c *coordinator.Config) { c.Auth.Tokens = nil }},
		{name: "bad token role", field: "auth.tokens[0].role", msg: "unknown role",
			mutate: func(c *coordinator.Config) { c.Auth.Tokens[0].Role = "superuser" }},
		{name: "plain token where the hash belongs", field: "auth.tokens[1].sha256", msg: "64 hex digits",
			mutate: func(c *coordinator.Config) {
				c.Auth.Tokens = append(c.Auth.Tokens, auth.Token{Name: "b", Role: "viewer", SHA256: "plain"})
			}},
		{name: "TLS with a CA but no certificate", field: "api.tls.cert_file", msg: "cert_file and key_file",
			mutate: func(c *coordinator.Config) { c.API.TLS.CAFile = caFile }},
		{name: "TLS files missing", field: "api.tls", msg: "no such file",
			mutate: func(c *coordinator.Config) { c.API.TLS.CertFile, c.API.TLS.KeyFile = caFile+".crt", caFile+".key" }},
		{name: "common part is validated first", field: "dc", msg: "required",
			mutate: func(c *coordinator.Config) { c.DC = ""; c.Auth.Tokens = nil }},
		{name: "etcd endpoints", field: "etcd.endpoints", msg: "at least one etcd endpoint",
			mutate: func(c *coordinator.Config) { c.Etcd.Endpoints = nil }},
		{name: "trusted proxy not an address", field: "api.trusted_proxies", msg: "neither an address nor a CIDR",
			mutate: func(c *coordinator.Config) { c.API.TrustedProxies = []string{"10.0.0.0/8", "proxy.example"} }},
		{name: "trusted proxies", mutate: func(c *coordinator.Config) { c.API.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.1"} }},
		{name: "no refusals allowed", field: "api.limits.refused_burst", msg: "between 1 and 10000",
			mutate: func(c *coordinator.Config) { c.API.Limits.RefusedBurst = 0 }},
		{name: "refusal window too short", field: "api.limits.refusal_window", msg: "between 1s and 1h",
			mutate: func(c *coordinator.Config) { c.API.Limits.RefusalWindow = time.Millisecond }},
		{name: "leader session too short", field: "leader.session_ttl", msg: "at least 2s",
			mutate: func(c *coordinator.Config) { c.Leader.SessionTTL = time.Second }},
		{name: "no ops wait", field: "ops.wait_timeout", msg: "between",
			mutate: func(c *coordinator.Config) { c.Ops.WaitTimeout = 0 }},
		{name: "no router grace", field: "handoff.router_grace", msg: "between",
			mutate: func(c *coordinator.Config) { c.Handoff.RouterGrace = 0 }},
		{name: "catch-up too long", field: "handoff.catch_up", msg: "between",
			mutate: func(c *coordinator.Config) { c.Handoff.CatchUp = time.Hour }},
		{name: "ops retention too short", field: "ops.retention", msg: "at least 1m",
			mutate: func(c *coordinator.Config) { c.Ops.Retention = time.Second }},
		{name: "embedded audit store needs a dir", field: "audit.dir", msg: "required for the embedded store",
			mutate: func(c *coordinator.Config) { c.Audit.Dir = "" }},
		{name: "audit in elasticsearch needs addresses", field: "audit.elasticsearch.addresses", msg: "at least one node URL",
			mutate: func(c *coordinator.Config) { c.Audit.Store = "elasticsearch" }},
		{name: "with NATS", mutate: func(c *coordinator.Config) { c.NATSURL = "nats://127.0.0.1:4222" }},
		{name: "NATS URL without a host", field: "nats_url", msg: "not a nats://host:port URL",
			mutate: func(c *coordinator.Config) { c.NATSURL = "127.0.0.1" }},
		{name: "ledger retry too soon", field: "ledger.retry_after", msg: "out of range",
			mutate: func(c *coordinator.Config) { c.Ledger.RetryAfter = time.Millisecond }},
		{name: "ledger round too large", field: "ledger.max_per_round", msg: "out of range",
			mutate: func(c *coordinator.Config) { c.Ledger.MaxPerRound = 5000 }},
		{name: "ledger in the audit index", field: "ledger.index", msg: "the audit index",
			mutate: func(c *coordinator.Config) { c.Ledger.Index = c.Audit.Index }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, ce.Msg, tt.msg)
			require.ErrorIs(t, err, config.ErrInvalid)
		})
	}
}

func TestSpec(t *testing.T) {
	cfg := validConfig()
	spec := coordinator.Spec(cfg)
	assert.Equal(t, "coordinator", spec.Name)
	assert.Same(t, cfg, spec.Config)
	assert.Same(t, &cfg.Common, spec.Config.Base())
	require.NotNil(t, spec.Run)
	require.NotNil(t, spec.Flags)
	assert.True(t, spec.LogicImplemented)
	assert.Contains(t, spec.Long, "EvacuationService")
	assert.NotContains(t, spec.Long, "UNIMPLEMENTED")
}
