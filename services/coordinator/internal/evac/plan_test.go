package evac_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
)

// labTopology has two cities of two DCs each and keyspaces of n shards.
func labTopology(n int, keyspaces ...string) topology.Topology {
	t := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs: []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"},
			{Name: "dc-b1", City: "city-b"}, {Name: "dc-b2", City: "city-b"}},
	}
	for _, ks := range keyspaces {
		t.Keyspaces = append(t.Keyspaces, topology.Keyspace{Name: ks, Cluster: "main", Database: "shop", Table: ks, ShardKey: "id", Shards: n})
	}
	return t
}

func world(topo topology.Topology) evac.World {
	w := evac.World{Topo: topo, Maps: map[string]shardmap.Map{}}
	for _, ks := range topo.Keyspaces {
		w.Maps[ks.Name] = shardmap.New(ks, topo)
	}
	w.Lag = func(dc, origin string) float64 {
		if dc == "dc-b1" && origin == "dc-a1" {
			return 12.5
		}
		return 1
	}
	return w
}

func setState(t *topology.Topology, dc string, st topology.DCState) {
	for i := range t.DCs {
		if t.DCs[i].Name == dc {
			t.DCs[i].State = st
		}
	}
}

func TestPlanEvacuateGoesToBackupsInWaves(t *testing.T) {
	w := world(labTopology(16, "orders", "users"))
	p, err := evac.PlanEvacuate(w, "dc-a1", "", 3)
	require.NoError(t, err)
	// 4 shards of each keyspace belong to dc-a1; 3 per wave, waves never
	// mix keyspaces: orders 3+1, users 3+1.
	require.Len(t, p.Handoffs, 8)
	waves := map[int][]string{}
	for _, h := range p.Handoffs {
		s, _ := w.Maps[h.Keyspace].Shard(h.Shard)
		assert.Equal(t, "dc-a1", h.From)
		assert.Equal(t, s.Backup, h.To, "the backup takes the shard")
		assert.NotEqual(t, h.To, h.Backup)
		assert.NotEqual(t, "dc-a1", h.Backup, "an ACTIVE DC is the new backup while one is left")
		assert.Equal(t, evac.StepPending, h.Step)
		waves[h.Wave] = append(waves[h.Wave], h.Keyspace)
	}
	require.Len(t, waves, 4)
	for wv, kss := range waves {
		for _, ks := range kss {
			assert.Equal(t, kss[0], ks, "wave %d mixes keyspaces", wv)
		}
		assert.LessOrEqual(t, len(kss), 3)
	}
	total := 0
	for _, tg := range p.Targets {
		total += tg.Shards
		if tg.DC == "dc-b1" {
			assert.InDelta(t, 12.5, tg.LagMs, 0.001, "the lag of the pair is the expected block")
		}
	}
	assert.Equal(t, 8, total)
}

func TestPlanEvacuateBalancesWhenBackupsCannotTakeShards(t *testing.T) {
	w := world(labTopology(64, "orders"))
	// Every backup of dc-a1's shards is draining or down now.
	setState(&w.Topo, "dc-b1", topology.DCDraining)
	setState(&w.Topo, "dc-b2", topology.DCDown)
	p, err := evac.PlanEvacuate(w, "dc-a1", "", 0)
	require.NoError(t, err)
	require.Len(t, p.Handoffs, 16)
	for _, h := range p.Handoffs {
		assert.Equal(t, "dc-a2", h.To, "the only ACTIVE DC left")
		assert.Equal(t, "dc-a1", h.Backup, "no other ACTIVE DC: the evacuated DC stays the hot copy")
		assert.Zero(t, h.Wave, "default wave size 64")
	}

	// With two qualifying DCs the shards split evenly.
	w = world(labTopology(64, "orders"))
	for i, s := range w.Maps["orders"].Shards {
		if s.Owner == "dc-a1" {
			s.Backup = "dc-b2"
		}
		w.Maps["orders"].Shards[i] = s
	}
	setState(&w.Topo, "dc-b2", topology.DCEvacuated)
	p, err = evac.PlanEvacuate(w, "dc-a1", "", 0)
	require.NoError(t, err)
	per := map[string]int{}
	for _, h := range p.Handoffs {
		per[h.To]++
	}
	assert.Equal(t, map[string]int{"dc-a2": 8, "dc-b1": 8}, per)
}

func TestPlanEvacuateTo(t *testing.T) {
	w := world(labTopology(16, "orders"))
	p, err := evac.PlanEvacuate(w, "dc-a1", "dc-a2", 2)
	require.NoError(t, err)
	require.Len(t, p.Handoffs, 4)
	for _, h := range p.Handoffs {
		assert.Equal(t, "dc-a2", h.To)
		assert.Contains(t, []string{"dc-b1", "dc-b2"}, h.Backup, "the backup is in another city than the target")
	}
	assert.Equal(t, 1, p.Handoffs[3].Wave)
}

func TestPlanEvacuateErrors(t *testing.T) {
	frozen := func(by string) func(*evac.World) {
		return func(w *evac.World) {
			m := w.Maps["orders"]
			s := m.Shards[4] // owned by dc-a1
			s.State, s.FrozenBy = shardmap.Frozen, by
			m.Shards[4] = s
		}
	}
	tests := []struct {
		name   string
		dc, to string
		mutate func(*evac.World)
		code   drplanev1.ErrorCode
		field  string
	}{
		{name: "no dc", code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, field: "dc"},
		{name: "unknown dc", dc: "dc-x", code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, field: "dc"},
		{name: "to itself", dc: "dc-a1", to: "dc-a1", code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, field: "to"},
		{name: "unknown to", dc: "dc-a1", to: "dc-x", code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, field: "to"},
		{name: "to draining", dc: "dc-a1", to: "dc-b1", code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, field: "to",
			mutate: func(w *evac.World) { setState(&w.Topo, "dc-b1", topology.DCDraining) }},
		{name: "to evacuated", dc: "dc-a1", to: "dc-b1", code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, field: "to",
			mutate: func(w *evac.World) { setState(&w.Topo, "dc-b1", topology.DCEvacuated) }},
		{name: "source down", dc: "dc-a1", code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, field: "dc",
			mutate: func(w *evac.World) { setState(&w.Topo, "dc-a1", topology.DCDown) }},
		{name: "shard frozen by an operator", dc: "dc-a1", code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, field: "dc",
			mutate: frozen(shardmap.FrozenByOperator)},
		{name: "shard in another handoff", dc: "dc-a1", code: drplanev1.ErrorCode_ERROR_CODE_CONFLICT, field: "dc",
			mutate: frozen("move_shard-x")},
		{name: "nowhere to go", dc: "dc-a1", code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, field: "dc",
			mutate: func(w *evac.World) {
				for _, dc := range []string{"dc-a2", "dc-b1", "dc-b2"} {
					setState(&w.Topo, dc, topology.DCDraining)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := world(labTopology(16, "orders"))
			if tt.mutate != nil {
				tt.mutate(&w)
			}
			_, err := evac.PlanEvacuate(w, tt.dc, tt.to, 8)
			require.Error(t, err)
			ae, ok := apierr.FromError(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, tt.code, ae.Code, "%v", err)
			assert.Equal(t, tt.field, ae.Field, "%v", err)
		})
	}
	_, err := evac.CheckParallel(5000)
	ae, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, "parallel", ae.Field)
	n, err := evac.CheckParallel(0)
	require.NoError(t, err)
	assert.Equal(t, evac.DefaultParallel, n)
}

func TestPlanRestoreHandsHomeShardsBack(t *testing.T) {
	w := world(labTopology(16, "orders"))
	ev, err := evac.PlanEvacuate(w, "dc-a1", "", 64)
	require.NoError(t, err)
	// Apply the evacuation to the map.
	m := w.Maps["orders"]
	for _, h := range ev.Handoffs {
		m, err = shardmap.Handoff(m, h.Shard, h.To, h.Backup, shardmap.Fence{Watermark: "1-1-5"})
		require.NoError(t, err)
	}
	w.Maps["orders"] = m
	p, err := evac.PlanRestore(w, "dc-a1", 64)
	require.NoError(t, err)
	require.Len(t, p.Handoffs, len(ev.Handoffs))
	for i, h := range p.Handoffs {
		assert.Equal(t, ev.Handoffs[i].To, h.From)
		assert.Equal(t, "dc-a1", h.To)
		assert.Equal(t, h.From, h.Backup, "the DC handing the shard back is its backup again")
	}
	// Nothing away from home: nothing to do.
	p, err = evac.PlanRestore(world(labTopology(16, "orders")), "dc-a1", 64)
	require.NoError(t, err)
	assert.Empty(t, p.Handoffs)
	_, err = evac.PlanRestore(w, "dc-x", 64)
	ae, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, "dc", ae.Field)
}
