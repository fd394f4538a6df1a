package control_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/control"
)

// TestStatusShowsQuarantine: status carries the HA agent's reason on the
// quarantined instance, and on no other.
func TestStatusShowsQuarantine(t *testing.T) {
	a := startAPI(t)
	ctx := t.Context()
	resp, err := (&control.Topology{Store: a.st}).GetStatus(ctx, &drplanev1.GetStatusRequest{})
	require.NoError(t, err)
	cl := resp.GetDcs()[0].GetClusters()[0]
	require.NotEmpty(t, cl.GetInstances())
	target := cl.GetInstances()[0].GetName()
	q := state.Quarantine{DC: resp.GetDcs()[0].GetName(), Cluster: cl.GetName(), Instance: target,
		Reason: "errant GTIDs 0-1-57: not repaired: repair is off", At: time.Now().UTC(), By: "agent-1"}
	_, err = state.Put(ctx, a.st, a.st.QuarantineKey(q.DC, q.Cluster, q.Instance), q, state.PutOptions{PrevRev: -1})
	require.NoError(t, err)

	resp, err = (&control.Topology{Store: a.st}).GetStatus(ctx, &drplanev1.GetStatusRequest{})
	require.NoError(t, err)
	seen := 0
	for _, dc := range resp.GetDcs() {
		for _, c := range dc.GetClusters() {
			for _, in := range c.GetInstances() {
				if dc.GetName() == q.DC && c.GetName() == q.Cluster && in.GetName() == target {
					assert.Equal(t, q.Reason, in.GetQuarantine())
					seen++
					continue
				}
				assert.Empty(t, in.GetQuarantine(), "%s/%s/%s is not quarantined", dc.GetName(), c.GetName(), in.GetName())
			}
		}
	}
	assert.Equal(t, 1, seen)
}
