package shardmap_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
)

func TestValidate(t *testing.T) {
	// The base map has 4 shards: [0, 2^62), [2^62, 2^63), [2^63, 3*2^62), [3*2^62, 2^64).
	tests := []struct {
		name   string
		edit   func(m *shardmap.Map, topo *topology.Topology)
		field  string // "" for a valid map
		substr string
	}{
		{name: "default map", edit: func(*shardmap.Map, *topology.Topology) {}},
		{name: "unsorted", edit: func(m *shardmap.Map, _ *topology.Topology) { slices.Reverse(m.Shards) }},
		{name: "single DC without backup", edit: func(m *shardmap.Map, topo *topology.Topology) {
			topo.DCs = topo.DCs[:1]
			for i := range m.Shards {
				m.Shards[i].Owner, m.Shards[i].Backup = "dc-a1", ""
			}
		}},
		{name: "owner in a DC that is down", edit: func(_ *shardmap.Map, topo *topology.Topology) {
			topo.DCs[0].State = topology.DCDown
		}},
		{name: "gap between shards", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[1].Hi -= 10 },
			field: "shards[2].lo", substr: "gap: [9223372036854775798, 9223372036854775808) belongs to no shard"},
		{name: "gap at the start", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[0].Lo = 5 },
			field: "shards[0].lo", substr: "gap: [0, 5)"},
		{name: "gap at the end", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards = m.Shards[:3] },
			field: "shards", substr: "gap: [13835058055282163712, 2^64) belongs to no shard"},
		{name: "last shard stops short", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[3].Hi = 1<<64 - 1 },
			field: "shards", substr: "gap: [18446744073709551615, 2^64)"},
		{name: "overlap", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[1].Hi += 10 },
			field: "shards[2].lo", substr: "overlaps shards[1] [4611686018427387904, 9223372036854775818)"},
		{name: "overlap in unsorted input", edit: func(m *shardmap.Map, _ *topology.Topology) {
			m.Shards[1].Hi += 10
			slices.Reverse(m.Shards)
		}, field: "shards[1].lo", substr: "overlaps shards[2]"},
		{name: "two shards reach the end", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[2].Hi = 0 },
			field: "shards[3].lo", substr: "overlaps shards[2] [9223372036854775808, 2^64)"},
		{name: "same range twice", edit: func(m *shardmap.Map, _ *topology.Topology) {
			m.Shards = append(m.Shards, m.Shards[3])
			m.Shards[4].ID = 4
		}, field: "shards[4].lo", substr: "overlaps shards[3]"},
		{name: "empty range", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[1].Hi = m.Shards[1].Lo },
			field: "shards[1].hi", substr: "is empty"},
		{name: "inverted range", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[1].Hi = 7 },
			field: "shards[1].hi", substr: "is empty"},
		{name: "duplicate id", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[3].ID = 1 },
			field: "shards[3].id", substr: "duplicate id 1 (also shards[1])"},
		{name: "negative id", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[2].ID = -2 },
			field: "shards[2].id", substr: "negative"},
		{name: "unknown owner", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[0].Owner = "dc-x" },
			field: "shards[0].owner", substr: `unknown DC "dc-x"`},
		{name: "empty owner", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[0].Owner = "" },
			field: "shards[0].owner", substr: "must not be empty"},
		{name: "unknown backup", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[1].Backup = "dc-y" },
			field: "shards[1].backup", substr: `unknown DC "dc-y"`},
		{name: "backup is the owner", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[2].Backup = m.Shards[2].Owner },
			field: "shards[2].backup", substr: "must differ from the owner"},
		{name: "missing backup", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[2].Backup = "" },
			field: "shards[2].backup", substr: "the topology has 3 DCs"},
		{name: "bad state", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[3].State = "BROKEN" },
			field: "shards[3].state", substr: `unknown state "BROKEN"`},
		{name: "empty state", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[3].State = "" },
			field: "shards[3].state", substr: "unknown state"},
		{name: "bad function", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Function = "MODULO" },
			field: "function", substr: `unknown function "MODULO"`},
		{name: "no shards", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards = nil },
			field: "shards", substr: "at least one shard"},
		{name: "too many shards", edit: func(m *shardmap.Map, _ *topology.Topology) {
			m.Shards = make([]shardmap.Shard, shardmap.MaxShards+1)
		}, field: "shards", substr: "at most 65536"},
		{name: "empty keyspace", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Keyspace = "" },
			field: "keyspace", substr: "must not be empty"},
		{name: "keyspace not a name", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Keyspace = "../etc" },
			field: "keyspace", substr: "may contain only"},
		{name: "unknown keyspace", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Keyspace = "payments" },
			field: "keyspace", substr: `unknown keyspace "payments"`},
		{name: "negative shard revision", edit: func(m *shardmap.Map, _ *topology.Topology) { m.Shards[0].Revision = -1 },
			field: "shards[0].revision", substr: "negative"},
		{name: "shard revision after the map's", edit: func(m *shardmap.Map, _ *topology.Topology) {
			m.Revision = 5
			m.Shards[0].Revision = 6
		}, field: "shards[0].revision", substr: "after the map's revision 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, topo := labMap(t, 4)
			tc.edit(&m, &topo)
			err := m.Validate(topo)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, shardmap.ErrInvalid)
			var ve *shardmap.ValidationError
			require.ErrorAs(t, err, &ve)
			found := false
			for _, fe := range ve.Errs {
				if fe.Field == tc.field && strings.Contains(fe.Msg, tc.substr) {
					found = true
				}
			}
			assert.True(t, found, "want %s: ...%s...; got %v", tc.field, tc.substr, err)
		})
	}
}

func TestValidateReportsEveryProblemOnce(t *testing.T) {
	m, topo := labMap(t, 4)
	m.Shards[0].State = "X"
	m.Shards[1].Backup = "dc-q"
	m.Shards[2].Hi -= 1
	err := m.Validate(topo)
	var ve *shardmap.ValidationError
	require.ErrorAs(t, err, &ve)
	fields := make([]string, 0, len(ve.Errs))
	for _, fe := range ve.Errs {
		fields = append(fields, fe.Field)
	}
	assert.ElementsMatch(t, []string{"shards[0].state", "shards[1].backup", "shards[3].lo"}, fields, "%v", err)
}

func TestValidateBoundsTheErrorList(t *testing.T) {
	m, topo := labMap(t, 200)
	for i := range m.Shards {
		m.Shards[i].State = "X"
	}
	err := m.Validate(topo)
	var ve *shardmap.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Errs, 51)
	assert.Equal(t, "150 more errors not shown", ve.Errs[50].Msg)
}

func TestCompileChecksStructure(t *testing.T) {
	m, _ := labMap(t, 4)
	m.Shards[1].Hi -= 10
	_, err := shardmap.Compile(m)
	require.ErrorIs(t, err, shardmap.ErrInvalid)
	var ve *shardmap.ValidationError
	require.True(t, errors.As(err, &ve))
	assert.Equal(t, "shards[2].lo", ve.Errs[0].Field)
}
