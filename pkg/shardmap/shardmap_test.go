package shardmap_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
)

func TestNewDefaultMap(t *testing.T) {
	m, _ := labMap(t, 64)
	assert.Equal(t, "orders", m.Keyspace)
	assert.Equal(t, shardmap.Hash, m.Function)
	assert.Zero(t, m.Revision)
	require.Len(t, m.Shards, 64)

	owners := []string{"dc-a1", "dc-a2", "dc-b1"}
	backupsOfB1 := map[string]int{}
	for i, s := range m.Shards {
		assert.Equal(t, i, s.ID)
		assert.Equal(t, uint64(i)<<58, s.Lo, "64 equal ranges are the top 6 bits")
		assert.Equal(t, shardmap.Active, s.State)
		assert.Zero(t, s.Revision)
		assert.Equal(t, owners[i%3], s.Owner, "owners go round-robin in topology order")
		switch s.Owner {
		case "dc-a1", "dc-a2":
			assert.Equal(t, "dc-b1", s.Backup, "the backup is in the other city")
		case "dc-b1":
			backupsOfB1[s.Backup]++
		}
	}
	assert.Zero(t, m.Shards[63].Hi, "the last range ends at 2^64")
	assert.Equal(t, map[string]int{"dc-a1": 11, "dc-a2": 10}, backupsOfB1, "dc-b1's 21 shards spread their backups over city-a")
}

func TestNewSkipsInactiveOwners(t *testing.T) {
	topo := labTopology()
	topo.DCs[1].State = topology.DCDraining // dc-a2
	m := shardmap.New(topo.Keyspaces[0], topo)
	require.NoError(t, m.Validate(topo))
	count := map[string]int{}
	for _, s := range m.Shards {
		count[s.Owner]++
		if s.Owner == "dc-a1" {
			assert.Equal(t, "dc-b1", s.Backup)
		} else {
			assert.Equal(t, "dc-a1", s.Backup, "a draining DC is no backup while an active one exists")
		}
	}
	assert.Equal(t, map[string]int{"dc-a1": 32, "dc-b1": 32}, count)
}

func TestNewBackupFallbacks(t *testing.T) {
	t.Run("one city", func(t *testing.T) {
		topo := labTopology()
		topo.DCs = topo.DCs[:2]
		m := shardmap.New(topo.Keyspaces[0], topo)
		require.NoError(t, m.Validate(topo))
		for _, s := range m.Shards {
			assert.NotEqual(t, s.Owner, s.Backup)
			assert.Contains(t, []string{"dc-a1", "dc-a2"}, s.Backup, "same-city backup when no other city exists")
		}
	})
	t.Run("other DC down", func(t *testing.T) {
		topo := labTopology()
		topo.DCs = []topology.DC{topo.DCs[0], topo.DCs[2]}
		topo.DCs[1].State = topology.DCDown
		m := shardmap.New(topo.Keyspaces[0], topo)
		require.NoError(t, m.Validate(topo))
		for _, s := range m.Shards {
			assert.Equal(t, "dc-a1", s.Owner)
			assert.Equal(t, "dc-b1", s.Backup, "a DC that is down is still named as backup when it is the only other one")
		}
	})
	t.Run("single DC", func(t *testing.T) {
		topo := labTopology()
		topo.DCs = topo.DCs[:1]
		m := shardmap.New(topo.Keyspaces[0], topo)
		require.NoError(t, m.Validate(topo))
		for _, s := range m.Shards {
			assert.Equal(t, "dc-a1", s.Owner)
			assert.Empty(t, s.Backup)
		}
	})
	t.Run("no active DC", func(t *testing.T) {
		topo := labTopology()
		for i := range topo.DCs {
			topo.DCs[i].State = topology.DCEvacuated
		}
		m := shardmap.New(topo.Keyspaces[0], topo)
		require.ErrorIs(t, m.Validate(topo), shardmap.ErrInvalid)
	})
	t.Run("no shards", func(t *testing.T) {
		ks, topo := withShards(labTopology(), 0)
		m := shardmap.New(ks, topo)
		require.ErrorIs(t, m.Validate(topo), shardmap.ErrInvalid)
	})
}

func TestEqualRanges(t *testing.T) {
	lo, hi := shardmap.EqualRanges(0)
	assert.Nil(t, lo)
	assert.Nil(t, hi)

	lo, hi = shardmap.EqualRanges(1)
	assert.Equal(t, []uint64{0}, lo)
	assert.Equal(t, []uint64{0}, hi, "one shard is [0, 2^64)")

	lo, hi = shardmap.EqualRanges(3)
	assert.Equal(t, []uint64{0, 6148914691236517205, 12297829382473034410}, lo, "floor(i*2^64/3)")
	assert.Equal(t, []uint64{6148914691236517205, 12297829382473034410, 0}, hi)

	rng := rand.New(rand.NewPCG(1, 2))
	for k := range 13 {
		n := 1 << k
		lo, hi := shardmap.EqualRanges(n)
		m := shardmap.Map{Keyspace: "orders", Function: shardmap.Hash}
		for i := range n {
			m.Shards = append(m.Shards, shardmap.Shard{ID: i, Lo: lo[i], Hi: hi[i], Owner: "dc-a1", State: shardmap.Active})
		}
		tbl, err := shardmap.Compile(m)
		require.NoError(t, err)
		for range 200 {
			p := rng.Uint64()
			want := 0
			if k > 0 {
				want = int(p >> (64 - k))
			}
			require.Equal(t, want, tbl.LookupPoint(p).Shard, "with 2^%d shards the shard is the top %d bits", k, k)
		}
	}
}

func TestSetShardState(t *testing.T) {
	m, topo := labMap(t, 4)
	for i := range m.Shards {
		m.Shards[i].Revision = 10
	}
	m.Revision = 12

	got, err := shardmap.SetShardState(m, 2, shardmap.Frozen)
	require.NoError(t, err)
	require.NoError(t, got.Validate(topo))
	assert.Equal(t, shardmap.Frozen, got.Shards[2].State)
	assert.Zero(t, got.Shards[2].Revision, "a change resets the shard's revision until it is stored")
	assert.Equal(t, int64(10), got.Shards[1].Revision, "other shards keep theirs")
	assert.Equal(t, int64(12), got.Revision, "the map keeps the revision it was read at")
	assert.Equal(t, shardmap.Active, m.Shards[2].State, "the input map is not modified")
	assert.Equal(t, int64(10), m.Shards[2].Revision)

	same, err := shardmap.SetShardState(m, 1, shardmap.Active)
	require.NoError(t, err)
	assert.Equal(t, int64(10), same.Shards[1].Revision, "setting the current state is no change")

	_, err = shardmap.SetShardState(m, 9, shardmap.Frozen)
	require.ErrorIs(t, err, shardmap.ErrNoShard)
	_, err = shardmap.SetShardState(m, 1, "MELTED")
	require.ErrorIs(t, err, shardmap.ErrInvalid)
}

func TestMoveShard(t *testing.T) {
	m, topo := labMap(t, 4)
	for i := range m.Shards {
		m.Shards[i].Revision = 5
	}
	before := m.Clone()

	got, err := shardmap.MoveShard(m, 0, "dc-b1", "dc-a2")
	require.NoError(t, err)
	require.NoError(t, got.Validate(topo))
	s, ok := got.Shard(0)
	require.True(t, ok)
	assert.Equal(t, "dc-b1", s.Owner)
	assert.Equal(t, "dc-a2", s.Backup)
	assert.Equal(t, shardmap.Active, s.State, "moving does not change the state")
	assert.Zero(t, s.Revision)
	assert.Equal(t, before, m, "the input map is not modified")

	_, err = shardmap.MoveShard(m, 0, "dc-a1", "dc-a1")
	require.ErrorIs(t, err, shardmap.ErrInvalid)
	_, err = shardmap.MoveShard(m, 0, "", "dc-a1")
	require.ErrorIs(t, err, shardmap.ErrInvalid)
	_, err = shardmap.MoveShard(m, 77, "dc-b1", "dc-a1")
	require.ErrorIs(t, err, shardmap.ErrNoShard)

	unknown, err := shardmap.MoveShard(m, 1, "dc-zz", "dc-a1")
	require.NoError(t, err, "existence of DCs is Validate's job")
	require.ErrorIs(t, unknown.Validate(topo), shardmap.ErrInvalid)
}
