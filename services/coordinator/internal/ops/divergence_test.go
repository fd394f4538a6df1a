package ops_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// TestResolve is the leader's decision table for resolve_divergence: only
// OPEN and CONFLICT entries are resolved, a discard is final, a reapply
// needs the change and targets the shard's current owner, which must be
// ACTIVE.
func TestResolve(t *testing.T) {
	topo := labTopology()
	ks, _ := topo.Keyspace("orders")
	m := shardmap.New(ks, topo)
	owner := m.Shards[3].Owner
	down := topo
	down.DCs = append([]topology.DC(nil), topo.DCs...)
	for i := range down.DCs {
		if down.DCs[i].Name == owner {
			down.DCs[i].State = topology.DCDown
		}
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	entry := func(st string, change bool) divergence.Entry {
		e := divergence.Entry{Origin: "dc-x", RequestID: "1-1-1/3", Keyspace: "orders", Shard: 3, Owner: "dc-a2", State: st}
		if change {
			e.Change = []byte{1}
		}
		return e
	}
	discard := ops.Params{DivergenceID: "dc-x:1-1-1/3", Action: divergence.ActionDiscard, Reason: " stale "}
	reapply := ops.Params{DivergenceID: "dc-x:1-1-1/3", Action: divergence.ActionReapply, Reason: "needed"}
	for _, tc := range []struct {
		name   string
		e      divergence.Entry
		topo   topology.Topology
		p      ops.Params
		code   drplanev1.ErrorCode
		state  string
		target string
	}{
		{"discard open", entry(divergence.Open, false), topo, discard, 0, divergence.Discarded, ""},
		{"discard unset state", entry("", false), topo, discard, 0, divergence.Discarded, ""},
		{"discard conflict", entry(divergence.Conflict, true), topo, discard, 0, divergence.Discarded, ""},
		{"reapply open", entry(divergence.Open, true), topo, reapply, 0, divergence.Replaying, owner},
		{"reapply conflict again", entry(divergence.Conflict, true), topo, reapply, 0, divergence.Replaying, owner},
		{"reapply without change", entry(divergence.Open, false), topo, reapply, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "", ""},
		{"reapply owner down", entry(divergence.Open, true), down, reapply, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "", ""},
		{"discarded already", entry(divergence.Discarded, true), topo, discard, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "", ""},
		{"replayed already", entry(divergence.Replayed, true), topo, reapply, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "", ""},
		{"replaying", entry(divergence.Replaying, true), topo, discard, drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "", ""},
		{"bad action", entry(divergence.Open, true), topo, ops.Params{DivergenceID: "dc-x:1", Action: "undo", Reason: "r"},
			drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ops.Resolve(tc.e, m, tc.topo, tc.p, "op-1", "oncall", now)
			if tc.code != 0 {
				ae, ok := apierr.FromError(err)
				require.True(t, ok, "%v", err)
				assert.Equal(t, tc.code, ae.Code, "%v", err)
				assert.Equal(t, tc.e, got, "a refused resolution leaves the entry as it was")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.state, got.State)
			require.NotNil(t, got.Resolution)
			assert.Equal(t, divergence.Resolution{Action: tc.p.Action, By: "oncall", Reason: strings.TrimSpace(tc.p.Reason), At: now,
				OperationID: "op-1", Target: tc.target}, *got.Resolution)
		})
	}
}
