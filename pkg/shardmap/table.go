package shardmap

import (
	"sort"

	"github.com/cespare/xxhash/v2"
)

// Route is where a key goes: its shard, the shard's owner and backup DCs and
// state, and the revisions it was decided at.
type Route struct {
	Shard  int
	Owner  string
	Backup string
	State  State
	// Revision is the shard's revision (see Shard.Revision).
	Revision int64
	// MapRevision is the revision of the map the table was compiled from.
	MapRevision int64
}

// Table is a compiled, immutable Map for lookups. It is safe for concurrent
// use; Lookup does not allocate.
type Table struct {
	keyspace string
	function Function
	revision int64
	// los are the shards' lower bounds in ascending order; los[0] == 0.
	los    []uint64
	routes []Route // routes[i] is the shard starting at los[i]
	byID   map[int]int
}

// Compile checks m's structure (everything Validate checks except the
// topology) and returns its lookup table. The table shares no memory with m.
func Compile(m Map) (*Table, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	shards := m.Clone().Shards
	sort.Slice(shards, func(i, j int) bool { return shards[i].Lo < shards[j].Lo })
	t := &Table{
		keyspace: m.Keyspace,
		function: m.Function,
		revision: m.Revision,
		los:      make([]uint64, len(shards)),
		routes:   make([]Route, len(shards)),
		byID:     make(map[int]int, len(shards)),
	}
	for i, s := range shards {
		t.los[i] = s.Lo
		t.routes[i] = Route{
			Shard: s.ID, Owner: s.Owner, Backup: s.Backup, State: s.State,
			Revision: s.Revision, MapRevision: m.Revision,
		}
		t.byID[s.ID] = i
	}
	return t, nil
}

// Keyspace returns the keyspace the table routes.
func (t *Table) Keyspace() string { return t.keyspace }

// Function returns the table's key function.
func (t *Table) Function() Function { return t.function }

// Revision returns the revision of the map the table was compiled from.
func (t *Table) Revision() int64 { return t.revision }

// Len returns the number of shards.
func (t *Table) Len() int { return len(t.los) }

// Routes returns every shard's route in ascending range order.
func (t *Table) Routes() []Route {
	out := make([]Route, len(t.routes))
	copy(out, t.routes)
	return out
}

// Shard returns the route of the shard with the given id.
func (t *Table) Shard(id int) (Route, bool) {
	i, ok := t.byID[id]
	if !ok {
		return Route{}, false
	}
	return t.routes[i], true
}

// Lookup routes key. It fails only for a RANGE table and a key that is not
// an unsigned decimal integer below 2^64, with ErrBadKey itself (unwrapped,
// so that the call never allocates).
func (t *Table) Lookup(key []byte) (Route, error) {
	p, ok := Point(t.function, key)
	if !ok {
		return Route{}, ErrBadKey
	}
	return t.routes[t.search(p)], nil
}

// LookupString is Lookup for a key held as a string.
func (t *Table) LookupString(key string) (Route, error) {
	p, ok := PointString(t.function, key)
	if !ok {
		return Route{}, ErrBadKey
	}
	return t.routes[t.search(p)], nil
}

// LookupPoint routes a point computed by Point or PointString.
func (t *Table) LookupPoint(p uint64) Route { return t.routes[t.search(p)] }

// search returns the index of the range holding p: the largest i with
// los[i] <= p.
func (t *Table) search(p uint64) int {
	lo, hi := 0, len(t.los) // los[lo] <= p; the answer is in [lo, hi)
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if t.los[mid] <= p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// Point returns the point of key under function f; ok is false when the key
// is not in f's key space (see the package documentation).
func Point(f Function, key []byte) (p uint64, ok bool) {
	if f == Range {
		return parseDecimal(key)
	}
	return xxhash.Sum64(key), true
}

// PointString is Point for a key held as a string.
func PointString(f Function, key string) (p uint64, ok bool) {
	if f == Range {
		return parseDecimal(key)
	}
	return xxhash.Sum64String(key), true
}

// HashKey returns XXH64(key, seed 0), the point of key in a HASH map.
func HashKey(key []byte) uint64 { return xxhash.Sum64(key) }

// parseDecimal reads an unsigned decimal integer of one or more ASCII digits
// whose value is below 2^64; leading zeros are allowed.
func parseDecimal[K string | []byte](key K) (uint64, bool) {
	if len(key) == 0 {
		return 0, false
	}
	const cutoff = (1<<64-1)/10 + 1 // the smallest value whose tenfold overflows
	var v uint64
	for i := range len(key) {
		c := key[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v >= cutoff {
			return 0, false
		}
		v *= 10
		d := uint64(c - '0')
		if v+d < v {
			return 0, false
		}
		v += d
	}
	return v, true
}
