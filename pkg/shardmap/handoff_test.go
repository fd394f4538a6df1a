package shardmap_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
)

func TestHandoffFencesTheOldOwner(t *testing.T) {
	m, topo := labMap(t, 4)
	s0, _ := m.Shard(0)
	require.Equal(t, "dc-a1", s0.Owner)
	require.Equal(t, "dc-a1", s0.Home)

	frozen, err := shardmap.Freeze(m, 0, "op-1")
	require.NoError(t, err)
	f0, _ := frozen.Shard(0)
	require.Equal(t, shardmap.Frozen, f0.State)
	require.Equal(t, "op-1", f0.FrozenBy)
	require.NoError(t, frozen.Validate(topo))

	moved, err := shardmap.Handoff(frozen, 0, "dc-b1", "dc-a1", shardmap.Fence{Watermark: "0-1-10", OperationID: "op-1"})
	require.NoError(t, err)
	require.NoError(t, moved.Validate(topo))
	got, _ := moved.Shard(0)
	require.Equal(t, "dc-b1", got.Owner)
	require.Equal(t, "dc-a1", got.Backup)
	require.Equal(t, "dc-a1", got.Home, "the home stays")
	require.Equal(t, shardmap.Active, got.State)
	require.Empty(t, got.FrozenBy)
	require.Equal(t, []shardmap.Fence{{DC: "dc-a1", Watermark: "0-1-10", OperationID: "op-1"}}, got.Fences)

	// Back home: the returning owner's fence goes, the other one's comes.
	back, err := shardmap.Handoff(moved, 0, "dc-a1", "dc-b1", shardmap.Fence{Watermark: "0-2-7", OperationID: "op-2"})
	require.NoError(t, err)
	require.NoError(t, back.Validate(topo))
	got, _ = back.Shard(0)
	require.Equal(t, "dc-a1", got.Owner)
	require.Equal(t, []shardmap.Fence{{DC: "dc-b1", Watermark: "0-2-7", OperationID: "op-2"}}, got.Fences)

	// The input maps are unchanged.
	s0, _ = m.Shard(0)
	require.Equal(t, shardmap.Active, s0.State)
	require.Empty(t, s0.Fences)
}

func TestDiverged(t *testing.T) {
	s := shardmap.Shard{Owner: "dc-b1", Fences: []shardmap.Fence{
		{DC: "dc-a1", Watermark: "0-1-10,3-9-5"},
		{DC: "dc-a2"},
	}}
	cases := []struct {
		origin, gtid string
		want         bool
	}{
		{"dc-b1", "0-2-99", false}, // the owner
		{"dc-a1", "0-1-10", false}, // at the watermark
		{"dc-a1", "0-1-9", false},  // before it
		{"dc-a1", "0-5-9", false},  // another server of the same domain, before
		{"dc-a1", "0-1-11", true},  // after it
		{"dc-a1", "3-9-6", true},
		{"dc-a1", "7-1-1", true},  // a domain the watermark lacks
		{"dc-a1", "junk", true},   // cannot be shown covered
		{"dc-a2", "0-1-1", true},  // forced move: no watermark
		{"dc-x9", "0-1-1", false}, // never handed the shard off
	}
	for _, c := range cases {
		_, got := shardmap.Diverged(s, c.origin, c.gtid)
		require.Equal(t, c.want, got, "%s %s", c.origin, c.gtid)
	}
}

func TestValidateFences(t *testing.T) {
	m, topo := labMap(t, 2)
	bad := m.Clone()
	bad.Shards[0].Fences = []shardmap.Fence{{DC: bad.Shards[0].Owner}, {DC: ""}}
	bad.Shards[1].FrozenBy = "op-1"
	err := bad.Validate(topo)
	require.ErrorIs(t, err, shardmap.ErrInvalid)
	require.ErrorContains(t, err, "shards[0].fences[0].dc")
	require.ErrorContains(t, err, "shards[0].fences[1].dc")
	require.ErrorContains(t, err, "shards[1].frozen_by")
}
