package failover

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// refusedAddr is an address nothing listens on: the SQL fence fails fast.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// silentAddr is an address that accepts connections and never answers,
// like a paused server: the SQL fence times out.
func silentAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// TestFenceOldWaitsForOneFence: with a fence hook, the promotion may go on
// once the hook fenced the old master even though the SQL fence failed, or
// once the old master refused the connection (nothing listens), and must
// not when both failed; without a hook nothing waits.
func TestFenceOldWaitsForOneFence(t *testing.T) {
	refused, silent := refusedAddr(t), silentAddr(t)
	for _, tc := range []struct {
		name    string
		addr    string
		hook    [][]string
		wantErr bool
	}{
		{"no hook", silent, nil, false},
		{"hook fenced it", silent, [][]string{{"true"}}, false},
		{"hook failed too", silent, [][]string{{"false"}}, true},
		{"refused: down", refused, [][]string{{"false"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := topology.Instance{Name: "db1", Addr: tc.addr}
			ops := NewOps(Creds{User: "agent"}, time.Second, 500*time.Millisecond)
			defer ops.Close()
			r := NewRunner(Options{Ops: ops, Hooks: Hooks{Fence: tc.hook, Timeout: 5 * time.Second}, FenceTimeout: 300 * time.Millisecond})
			p := r.start(state.KindFailover, topology.Cluster{DC: "dc1", Name: "main"}, state.Fence{})
			p.rec.OldMaster, p.oldAddr = old.Name, old.Addr
			await, wait := r.fenceOld(context.Background(), p, old, true)
			err := await()
			wait()
			if tc.wantErr {
				require.ErrorIs(t, err, ErrNotFenced)
				assert.ErrorIs(t, err, ErrHookFailed)
				assert.ErrorIs(t, err, ErrFenceIncomplete)
			} else {
				require.NoError(t, err)
			}
			steps := map[string]string{}
			for _, s := range p.rec.Steps {
				steps[s.Name] = s.Error
			}
			assert.NotEmpty(t, steps["fence_old_master"], "the SQL fence of %s must fail", tc.addr)
			_, down := steps["old_master_down"]
			assert.Equal(t, tc.addr == refused, down, "old_master_down step")
			if tc.hook != nil {
				assert.Contains(t, steps, "fence_hook")
			} else {
				assert.NotContains(t, steps, "fence_hook")
			}
		})
	}
}

// TestFenceHookGetsTheOldMaster: the fence hook is told which instance to
// fence, by name and address.
func TestFenceHookGetsTheOldMaster(t *testing.T) {
	v := HookVars{OldMaster: "db1", OldAddr: "10.0.0.1:3306"}
	assert.Equal(t, []string{"fence", "db1", "10.0.0.1:3306"}, v.Expand([]string{"fence", "{old_master}", "{old_addr}"}))
	assert.Contains(t, v.env("fence"), "DRPLANE_OLD_ADDR=10.0.0.1:3306")
}
