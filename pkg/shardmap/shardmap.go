package shardmap

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/drplane/drplane/pkg/topology"
)

// Function is the rule that turns a key into a point of the 64-bit space.
type Function string

// Functions; see the package documentation for the exact rules.
const (
	// Hash maps a key to XXH64(key bytes, seed 0).
	Hash Function = "HASH"
	// Range maps a key to its value as an unsigned decimal integer.
	Range Function = "RANGE"
)

// Valid reports whether f is a known function.
func (f Function) Valid() bool { return f == Hash || f == Range }

// State is the state of one shard.
type State string

// Shard states.
const (
	// Active: the owner takes the shard's writes.
	Active State = "ACTIVE"
	// Frozen: nobody takes the shard's writes (clients get a retryable
	// error) while a workflow waits for the target DC to catch up.
	Frozen State = "FROZEN"
	// Moving: the shard is being handed to another DC; the owner still
	// takes writes.
	Moving State = "MOVING"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool { return s == Active || s == Frozen || s == Moving }

// MaxShards bounds the number of shards of one map (as topology bounds a
// keyspace's shard count).
const MaxShards = 65536

// Errors. Validation errors wrap ErrInvalid; see ValidationError.
var (
	ErrInvalid = errors.New("shardmap: invalid")
	// ErrNoShard means a mutation named a shard id the map does not have.
	ErrNoShard = errors.New("shardmap: no such shard")
	// ErrBadKey means a key is not in the map's key space: a RANGE map was
	// asked for a key that is not an unsigned decimal integer below 2^64.
	ErrBadKey = errors.New("shardmap: key is not an unsigned 64-bit decimal integer")
)

// Map is the shard map of one keyspace.
type Map struct {
	Keyspace string   `json:"keyspace"`
	Function Function `json:"function"`
	Shards   []Shard  `json:"shards"`
	// Revision is the etcd mod revision the map was read at (0 for a map
	// that was never stored). It is not part of the stored value.
	Revision int64 `json:"-"`
}

// Shard is one range of the key space and who owns it.
type Shard struct {
	ID int `json:"id"`
	// Lo is the first point of the shard's range.
	Lo uint64 `json:"lo,string"`
	// Hi is the first point after the range; 0 means 2^64 (the end of the
	// space).
	Hi uint64 `json:"hi,string"`
	// Owner is the DC that takes the shard's writes.
	Owner string `json:"owner"`
	// Backup is the DC the shard moves to when its owner is lost. It is empty
	// only when the topology has a single DC.
	Backup string `json:"backup,omitempty"`
	State  State  `json:"state"`
	// Revision is the etcd mod revision of the write that last changed the
	// shard's owner, backup or state; 0 for a change not stored yet.
	Revision int64 `json:"revision"`
	// Home is the DC the shard belongs to when every DC is healthy: its
	// first owner (see HomeDC for maps stored before it existed).
	Home string `json:"home,omitempty"`
	// FrozenBy says who froze a FROZEN shard: a handoff's operation id, or
	// FrozenByOperator.
	FrozenBy string `json:"frozen_by,omitempty"`
	// Fences are the capture watermarks of the DCs that handed the shard
	// off, at most one per DC: a change such a DC captured for the shard
	// after its watermark is divergence (see Diverged).
	Fences []Fence `json:"fences,omitempty"`
}

// FrozenByOperator is Shard.FrozenBy for a freeze set through the API.
const FrozenByOperator = "operator"

// Fence is the last handoff of a shard away from one DC.
type Fence struct {
	DC string `json:"dc"`
	// Watermark is the DC's GTID position at the handoff: everything it
	// captured for the shard at or before it was applied at the new owner.
	// Empty for a forced move: then everything it captures after the flip
	// diverges.
	Watermark   string `json:"watermark,omitempty"`
	OperationID string `json:"operation_id,omitempty"`
	// Revision is the map revision of the flip (0 until stored).
	Revision int64 `json:"revision,omitempty"`
}

// HomeDC returns the shard's home DC: Home, or the owner for a shard
// stored before homes were recorded.
func (s Shard) HomeDC() string {
	if s.Home != "" {
		return s.Home
	}
	return s.Owner
}

// FenceOf returns the fence of dc, if the shard has one.
func (s Shard) FenceOf(dc string) (Fence, bool) {
	for _, f := range s.Fences {
		if f.DC == dc {
			return f, true
		}
	}
	return Fence{}, false
}

// Contains reports whether point p falls in the shard's range.
func (s Shard) Contains(p uint64) bool {
	return p >= s.Lo && (s.Hi == 0 || p < s.Hi)
}

// EqualRanges returns the bounds of n equal ranges over the 64-bit space:
// range i is [floor(i*2^64/n), floor((i+1)*2^64/n)), with the last Hi
// written as 0 (2^64). It returns nil for n < 1.
func EqualRanges(n int) (lo, hi []uint64) {
	if n < 1 {
		return nil, nil
	}
	lo = make([]uint64, n)
	hi = make([]uint64, n)
	d := uint64(n)
	for i := range n {
		// i*2^64 / n as a 128-bit division: the high word is i, the low word 0.
		lo[i], _ = bits.Div64(uint64(i), 0, d)
	}
	for i := range n - 1 {
		hi[i] = lo[i+1]
	}
	hi[n-1] = 0
	return lo, hi
}

// New returns the default map of a keyspace: ks.Shards equal HASH ranges,
// owners assigned round-robin over the topology's ACTIVE DCs in topology
// order, every shard ACTIVE. A shard's backup is, in order of preference, an
// ACTIVE DC in another city, an ACTIVE DC in the same city, any other DC;
// the candidates of one tier are used in turn by the successive shards of
// one owner, so backups spread as well. With a single DC there is no backup.
// With no ACTIVE DC, or ks.Shards < 1, the map does not validate.
func New(ks topology.Keyspace, topo topology.Topology) Map {
	m := Map{Keyspace: ks.Name, Function: Hash}
	if ks.Shards < 1 {
		return m
	}
	var owners []topology.DC
	for _, dc := range topo.DCs {
		if dc.StateOf() == topology.DCActive {
			owners = append(owners, dc)
		}
	}
	lo, hi := EqualRanges(ks.Shards)
	m.Shards = make([]Shard, ks.Shards)
	perOwner := map[string]int{}
	for i := range m.Shards {
		s := Shard{ID: i, Lo: lo[i], Hi: hi[i], State: Active}
		if len(owners) > 0 {
			owner := owners[i%len(owners)]
			s.Owner, s.Home = owner.Name, owner.Name
			if c := backupCandidates(owner, topo); len(c) > 0 {
				s.Backup = c[perOwner[owner.Name]%len(c)]
			}
			perOwner[owner.Name]++
		}
		m.Shards[i] = s
	}
	return m
}

// backupCandidates returns the best tier of backup DCs for owner.
func backupCandidates(owner topology.DC, topo topology.Topology) []string {
	var otherCity, sameCity, rest []string
	for _, dc := range topo.DCs {
		if dc.Name == owner.Name {
			continue
		}
		rest = append(rest, dc.Name)
		if dc.StateOf() != topology.DCActive {
			continue
		}
		if dc.City != owner.City {
			otherCity = append(otherCity, dc.Name)
		} else {
			sameCity = append(sameCity, dc.Name)
		}
	}
	switch {
	case len(otherCity) > 0:
		return otherCity
	case len(sameCity) > 0:
		return sameCity
	}
	return rest
}

// Clone returns a copy of m that shares no memory with it.
func (m Map) Clone() Map {
	c := m
	if m.Shards != nil {
		c.Shards = make([]Shard, len(m.Shards))
		copy(c.Shards, m.Shards)
	}
	return c
}

// Shard returns the shard with the given id.
func (m Map) Shard(id int) (Shard, bool) {
	if i := m.index(id); i >= 0 {
		return m.Shards[i], true
	}
	return Shard{}, false
}

func (m Map) index(id int) int {
	for i, s := range m.Shards {
		if s.ID == id {
			return i
		}
	}
	return -1
}

// SetShardState returns a copy of m with shard id in state st. A change
// resets the shard's revision to 0 (stamped when stored); setting the state
// the shard already has changes nothing. m itself is not modified.
func SetShardState(m Map, id int, st State) (Map, error) {
	if !st.Valid() {
		return m, fmt.Errorf("%w: shard %d: unknown state %q (want ACTIVE, FROZEN or MOVING)", ErrInvalid, id, st)
	}
	i := m.index(id)
	if i < 0 {
		return m, fmt.Errorf("%w: %d in keyspace %q", ErrNoShard, id, m.Keyspace)
	}
	out := m.Clone()
	if out.Shards[i].State != st {
		out.Shards[i].State = st
		out.Shards[i].Revision = 0
	}
	if st != Frozen {
		out.Shards[i].FrozenBy = ""
	} else if out.Shards[i].FrozenBy == "" {
		out.Shards[i].FrozenBy = FrozenByOperator
	}
	return out, nil
}

// Freeze returns a copy of m with shard id FROZEN by by (an operation id or
// FrozenByOperator); m itself is not modified.
func Freeze(m Map, id int, by string) (Map, error) {
	i := m.index(id)
	if i < 0 {
		return m, fmt.Errorf("%w: %d in keyspace %q", ErrNoShard, id, m.Keyspace)
	}
	out := m.Clone()
	s := &out.Shards[i]
	if s.State != Frozen || s.FrozenBy != by {
		s.State, s.FrozenBy, s.Revision = Frozen, by, 0
	}
	return out, nil
}

// Handoff returns a copy of m in which shard id is owned by newOwner with
// newBackup as its backup, ACTIVE, with the old owner fenced at watermark
// (see Fence) and newOwner's own fence dropped (it takes writes again). The
// home DC is kept (set to the old owner when the map had none). m itself is
// not modified.
func Handoff(m Map, id int, newOwner, newBackup string, fence Fence) (Map, error) {
	out, err := MoveShard(m, id, newOwner, newBackup)
	if err != nil {
		return m, err
	}
	s := &out.Shards[out.index(id)]
	old, _ := m.Shard(id)
	if s.Home == "" {
		s.Home = old.Owner
	}
	if old.Owner == newOwner {
		s.State, s.FrozenBy = Active, ""
		return out, nil
	}
	fence.DC = old.Owner
	fences := make([]Fence, 0, len(s.Fences)+1)
	for _, f := range s.Fences {
		if f.DC != old.Owner && f.DC != newOwner {
			fences = append(fences, f)
		}
	}
	s.Fences = append(fences, fence)
	s.State, s.FrozenBy, s.Revision = Active, "", 0
	return out, nil
}

// MoveShard returns a copy of m in which shard id is owned by newOwner with
// newBackup as its backup; the shard's state is left as it is (a workflow
// sets it separately). Whether the DCs exist is checked by Validate. A change
// resets the shard's revision to 0; m itself is not modified.
func MoveShard(m Map, id int, newOwner, newBackup string) (Map, error) {
	if newOwner == "" {
		return m, fmt.Errorf("%w: shard %d: new owner must not be empty", ErrInvalid, id)
	}
	if newOwner == newBackup {
		return m, fmt.Errorf("%w: shard %d: backup %q must differ from the owner", ErrInvalid, id, newBackup)
	}
	i := m.index(id)
	if i < 0 {
		return m, fmt.Errorf("%w: %d in keyspace %q", ErrNoShard, id, m.Keyspace)
	}
	out := m.Clone()
	s := &out.Shards[i]
	if s.Owner != newOwner || s.Backup != newBackup {
		s.Owner, s.Backup = newOwner, newBackup
		s.Revision = 0
	}
	return out, nil
}

// Equal reports whether s and o are the same shard entry, fences included.
func (s Shard) Equal(o Shard) bool {
	return s.ID == o.ID && s.Lo == o.Lo && s.Hi == o.Hi && s.Owner == o.Owner && s.Backup == o.Backup &&
		s.State == o.State && s.Revision == o.Revision && s.Home == o.Home && s.FrozenBy == o.FrozenBy &&
		slices.Equal(s.Fences, o.Fences)
}
