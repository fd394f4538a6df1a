package evac

import (
	"fmt"
	"sort"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Parallel bounds.
const (
	DefaultParallel = 64
	MaxParallel     = 4096
)

// Request field names the planning errors refer to.
const (
	FieldDC       = "dc"
	FieldTo       = "to"
	FieldParallel = "parallel"
)

// World is what a plan is made from: the topology, every keyspace's shard
// map, and the current replication lag into a DC from an origin (p99, ms;
// nil means unknown, 0).
type World struct {
	Topo topology.Topology
	Maps map[string]shardmap.Map
	Lag  func(dc, origin string) float64
}

// Plan is the handoffs of an operation, in waves, and its targets.
type Plan struct {
	Handoffs []Handoff
	Targets  []Target
}

// CheckParallel resolves a requested wave size.
func CheckParallel(n int32) (int, error) {
	switch {
	case n == 0:
		return DefaultParallel, nil
	case n < 0 || n > MaxParallel:
		return 0, apierr.InvalidArgument(FieldParallel, fmt.Sprintf("parallel must be between 1 and %d (0 means %d), got %d", MaxParallel, DefaultParallel, n))
	}
	return int(n), nil
}

func failed(field, format string, args ...any) *apierr.Error {
	e := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, format, args...)
	e.Field = field
	return e
}

func unknownDC(field, dc string) *apierr.Error {
	e := apierr.NotFound("DC", dc)
	e.Field = field
	return e
}

// takes reports whether dc may receive shards: it is ACTIVE.
func takes(dc topology.DC) bool { return dc.StateOf() == topology.DCActive }

// PlanEvacuate plans handing every shard dc owns to to (when set) or to
// its backup, or when the backup cannot take it (draining, down or
// evacuated, or dc itself) to the ACTIVE DC that has been given the fewest
// shards so far. Errors are API errors naming the request field.
func PlanEvacuate(w World, dc, to string, parallel int) (Plan, error) {
	if dc == "" {
		return Plan{}, apierr.InvalidArgument(FieldDC, "dc is required: the DC to evacuate")
	}
	src, ok := w.Topo.DC(dc)
	if !ok {
		return Plan{}, unknownDC(FieldDC, dc)
	}
	if src.StateOf() == topology.DCDown {
		return Plan{}, failed(FieldDC, "DC %s is DOWN: its shards cannot be handed off safely (its collector cannot write the barrier); fail it over instead", dc)
	}
	if to != "" {
		t, ok := w.Topo.DC(to)
		switch {
		case to == dc:
			return Plan{}, apierr.InvalidArgument(FieldTo, fmt.Sprintf("to %q is the DC being evacuated", to))
		case !ok:
			return Plan{}, unknownDC(FieldTo, to)
		case !takes(t):
			return Plan{}, failed(FieldTo, "target DC %s is %s: shards only go to an ACTIVE DC", to, t.StateOf())
		}
	}
	given, backups := map[string]int{}, map[string]int{}
	var hs []Handoff
	for _, ks := range keyspaces(w) {
		m := w.Maps[ks]
		var wave []Handoff
		for _, s := range m.Shards {
			if s.Owner != dc {
				continue
			}
			if err := movable(m.Keyspace, s); err != nil {
				return Plan{}, err
			}
			target := to
			if target == "" {
				target = pickTarget(w.Topo, dc, s.Backup, given)
			}
			if target == "" {
				return Plan{}, failed(FieldDC, "no DC can take shard %s/%d of %s: every other DC is DRAINING, DOWN or EVACUATED", m.Keyspace, s.ID, dc)
			}
			given[target]++
			wave = append(wave, Handoff{Keyspace: m.Keyspace, Shard: s.ID, From: dc, To: target,
				Backup: pickBackup(w.Topo, dc, target, backups), Step: StepPending})
		}
		hs = append(hs, wave...)
	}
	return finish(w, hs, parallel), nil
}

// PlanRestore plans handing every shard whose home is dc back to it, from
// its current owner (which becomes its backup).
func PlanRestore(w World, dc string, parallel int) (Plan, error) {
	if dc == "" {
		return Plan{}, apierr.InvalidArgument(FieldDC, "dc is required: the DC to restore")
	}
	if _, ok := w.Topo.DC(dc); !ok {
		return Plan{}, unknownDC(FieldDC, dc)
	}
	var hs []Handoff
	for _, ks := range keyspaces(w) {
		m := w.Maps[ks]
		for _, s := range m.Shards {
			if s.HomeDC() != dc || s.Owner == dc {
				continue
			}
			if err := movable(m.Keyspace, s); err != nil {
				return Plan{}, err
			}
			if o, ok := w.Topo.DC(s.Owner); ok && o.StateOf() == topology.DCDown {
				return Plan{}, failed(FieldDC, "shard %s/%d is owned by %s, which is DOWN: it cannot hand the shard back safely", m.Keyspace, s.ID, s.Owner)
			}
			hs = append(hs, Handoff{Keyspace: m.Keyspace, Shard: s.ID, From: s.Owner, To: dc, Backup: s.Owner, Step: StepPending})
		}
	}
	return finish(w, hs, parallel), nil
}

// PlanMove plans one shard's move (backup as resolved by the caller).
func PlanMove(w World, keyspace string, shard int, to, backup string) Plan {
	m := w.Maps[keyspace]
	s, _ := m.Shard(shard)
	return finish(w, []Handoff{{Keyspace: keyspace, Shard: shard, From: s.Owner, To: to, Backup: backup, Step: StepPending}}, 1)
}

// movable refuses a shard a handoff must not take over.
func movable(ks string, s shardmap.Shard) error {
	if s.State != shardmap.Frozen {
		return nil
	}
	if s.FrozenBy == shardmap.FrozenByOperator || s.FrozenBy == "" {
		return failed(FieldDC, "shard %s/%d is frozen by an operator: unfreeze it first (drctl shards set-state … ACTIVE)", ks, s.ID)
	}
	e := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "shard %s/%d is frozen by operation %s, which is handing it off", ks, s.ID, s.FrozenBy)
	e.Field = FieldDC
	return e
}

func keyspaces(w World) []string {
	names := make([]string, 0, len(w.Maps))
	for n := range w.Maps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// pickTarget returns backup when it can take the shard, else the ACTIVE DC
// (other than dc) given the fewest shards, in topology order on ties; ""
// when none can.
func pickTarget(topo topology.Topology, dc, backup string, given map[string]int) string {
	if b, ok := topo.DC(backup); ok && backup != dc && takes(b) {
		return backup
	}
	best := ""
	for _, d := range topo.DCs {
		if d.Name == dc || !takes(d) {
			continue
		}
		if best == "" || given[d.Name] < given[best] {
			best = d.Name
		}
	}
	return best
}

// pickBackup returns the new backup of a shard moving from dc to target:
// an ACTIVE DC other than both, in another city than target if one is,
// the least used so far; dc itself (it stays a hot copy) when none is.
func pickBackup(topo topology.Topology, dc, target string, used map[string]int) string {
	t, _ := topo.DC(target)
	var other, same []string
	for _, d := range topo.DCs {
		if d.Name == dc || d.Name == target || !takes(d) {
			continue
		}
		if d.City != t.City {
			other = append(other, d.Name)
		} else {
			same = append(same, d.Name)
		}
	}
	tier := other
	if len(tier) == 0 {
		tier = same
	}
	if len(tier) == 0 {
		return dc
	}
	best := tier[0]
	for _, n := range tier[1:] {
		if used[n] < used[best] {
			best = n
		}
	}
	used[best]++
	return best
}

// finish cuts hs (ordered by keyspace) into waves of at most parallel
// shards of one keyspace and counts the targets.
func finish(w World, hs []Handoff, parallel int) Plan {
	wave, inWave := 0, 0
	for i := range hs {
		if i > 0 && (hs[i].Keyspace != hs[i-1].Keyspace || inWave == parallel) {
			wave++
			inWave = 0
		}
		hs[i].Wave = wave
		inWave++
	}
	byTarget := map[string]*Target{}
	var order []string
	for _, h := range hs {
		t, ok := byTarget[h.To]
		if !ok {
			t = &Target{DC: h.To}
			byTarget[h.To] = t
			order = append(order, h.To)
		}
		t.Shards++
		if w.Lag != nil {
			t.LagMs = max(t.LagMs, w.Lag(h.To, h.From))
		}
	}
	sort.Strings(order)
	p := Plan{Handoffs: hs}
	for _, n := range order {
		p.Targets = append(p.Targets, *byTarget[n])
	}
	return p
}
