package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/haagent/internal/agent"
)

// TestSinglePointLimitBelowSemiSyncTimeout: a single-point primary must
// fence its masters before one cut off from its replicas could acknowledge
// asynchronously, so the limit plus the election TTL may not exceed
// semi_sync_timeout, and there is always a limit.
func TestSinglePointLimitBelowSemiSyncTimeout(t *testing.T) {
	base := func() *agent.Config {
		cfg := agent.DefaultConfig()
		cfg.DC, cfg.ID = "dc-a1", "agent-1"
		cfg.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		cfg.MySQL.User = "drplane"
		return cfg
	}
	require.NoError(t, base().Validate(), "the defaults: 10s + 5s ≤ 30s")
	for name, edit := range map[string]func(*agent.Config){
		"no limit":                   func(c *agent.Config) { c.Election.SinglePointLimit = 0 },
		"limit + ttl past semi-sync": func(c *agent.Config) { c.Election.SinglePointLimit = 26 * time.Second },
		"semi-sync lowered":          func(c *agent.Config) { c.SemiSyncTimeout = 12 * time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			edit(cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "election.single_point_limit")
		})
	}
	cfg := base()
	cfg.SemiSyncTimeout, cfg.Election.SinglePointLimit = 12*time.Second, 7*time.Second
	assert.NoError(t, cfg.Validate(), "7s + 5s ≤ 12s")
}
