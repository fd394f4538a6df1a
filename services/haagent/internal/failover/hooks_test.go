package failover_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/haagent/internal/failover"
)

// TestHookEnvironmentScrubbed: a hook sees the DRPLANE_* values and PATH,
// never the agent's other variables (its credentials).
func TestHookEnvironmentScrubbed(t *testing.T) {
	t.Setenv("DRPLANE_MYSQL_PASSWORD", "hunter22")
	t.Setenv("ETCD_PASSWORD", "etcd-secret")
	h := failover.Hooks{Timeout: 5 * time.Second}
	err := h.Run(context.Background(), "post_failure", [][]string{{"sh", "-c", "env; exit 1"}},
		failover.HookVars{Cluster: "main", DC: "dc1"})
	require.ErrorIs(t, err, failover.ErrHookFailed)
	assert.Contains(t, err.Error(), "DRPLANE_CLUSTER=main")
	assert.Contains(t, err.Error(), "PATH="+os.Getenv("PATH"))
	assert.NotContains(t, err.Error(), "hunter22")
	assert.NotContains(t, err.Error(), "etcd-secret")
	assert.NotContains(t, err.Error(), "ETCD_PASSWORD")
}

// TestHookOutputRedacted: the agent's secrets and credential-shaped values
// never reach the error (stored in the failover record).
func TestHookOutputRedacted(t *testing.T) {
	h := failover.Hooks{Timeout: 5 * time.Second, Secrets: []string{"s3cr3t-pw"}}
	err := h.Run(context.Background(), "pre_failover",
		[][]string{{"sh", "-c", "echo connecting with s3cr3t-pw; echo 'mysql --password=abc123 token: xyz'; exit 3"}},
		failover.HookVars{})
	require.ErrorIs(t, err, failover.ErrHookFailed)
	for _, leak := range []string{"s3cr3t-pw", "abc123", "xyz"} {
		assert.NotContains(t, err.Error(), leak)
	}
	assert.Contains(t, err.Error(), "--password=[REDACTED]")
}

// TestHookGrandchildDoesNotOutliveTimeout: a hook that leaves a child
// holding its output is cut off shortly after its timeout.
func TestHookGrandchildDoesNotOutliveTimeout(t *testing.T) {
	h := failover.Hooks{Timeout: 300 * time.Millisecond}
	start := time.Now()
	err := h.Run(context.Background(), "pre_failover", [][]string{{"sh", "-c", "sleep 30 & sleep 30"}}, failover.HookVars{})
	took := time.Since(start)
	require.ErrorIs(t, err, failover.ErrHookFailed)
	assert.Less(t, took, 10*time.Second, "the hook returned after %s", took)
}
