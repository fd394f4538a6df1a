package router

import (
	"fmt"
	"strconv"

	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Master is the current master of one (dc, cluster): where the owner DC of
// a shard takes its writes.
type Master struct {
	DC       string
	Cluster  string
	Instance string
	// Addr is host:port of the MySQL protocol.
	Addr string
	// Term is the master record's term; it grows with every promotion.
	Term int64
}

// Known reports whether m names an endpoint.
func (m Master) Known() bool { return m.Addr != "" }

// Route is where one key goes: its shard, the shard's owner and backup DCs,
// its state, the owner DC's master, and the revisions it was decided at.
type Route struct {
	Keyspace string
	Shard    int
	// Owner is the DC that takes the shard's writes.
	Owner  string
	Backup string
	State  shardmap.State
	// Local reports whether Owner is the router's own DC (Options.DC).
	Local bool
	// Master is the owner DC's master of the keyspace's cluster; its zero
	// value (Known false) when the routing table names none.
	Master Master
	// Revision is the revision that last changed the shard; MapRevision
	// the revision of the keyspace's routing table.
	Revision    int64
	MapRevision int64
}

// sparseFactor bounds how sparse shard ids may be before the table indexes
// routes through a map instead of a slice.
const sparseFactor = 8

// table is the compiled, immutable routing table of one keyspace. Lookups
// through it do not allocate.
type table struct {
	keyspace string
	cluster  string
	revision int64
	lookup   *shardmap.Table
	// dense[id] is the route of shard id when ids are dense enough; else
	// sparse holds them.
	dense  []Route
	sparse map[int]*Route
	// masters are the cluster's masters by DC.
	masters map[string]Master
}

// compile turns a routing table received from the coordinator into a lookup
// table for a router in DC dc. It fails, leaving the caller's old table in
// place, when the table is not a valid shard map.
func compile(rt *drplanev1.RoutingTable, dc string) (*table, error) {
	m := shardmap.Map{
		Keyspace: rt.GetKeyspace(),
		Function: shardmap.Function(rt.GetFunction()),
		Revision: rt.GetMapRevision(),
		Shards:   make([]shardmap.Shard, len(rt.GetShards())),
	}
	for i, s := range rt.GetShards() {
		lo, err := strconv.ParseUint(s.GetLo(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: keyspace %q: shards[%d].lo %q is not an unsigned 64-bit decimal", ErrBadTable, m.Keyspace, i, s.GetLo())
		}
		hi, err := strconv.ParseUint(s.GetHi(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: keyspace %q: shards[%d].hi %q is not an unsigned 64-bit decimal", ErrBadTable, m.Keyspace, i, s.GetHi())
		}
		m.Shards[i] = shardmap.Shard{
			ID: int(s.GetId()), Lo: lo, Hi: hi,
			Owner: s.GetOwnerDc(), Backup: s.GetBackupDc(),
			State: stateOf(s.GetState()), Revision: s.GetRevision(),
		}
	}
	lt, err := shardmap.Compile(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	t := &table{
		keyspace: m.Keyspace,
		cluster:  rt.GetCluster(),
		revision: m.Revision,
		lookup:   lt,
		masters:  mastersOf(rt),
	}
	t.index(m.Shards, dc)
	return t, nil
}

// mastersOf returns the table's masters by DC: endpoints of other clusters
// and without an address are left out; of two for one DC the higher term
// wins.
func mastersOf(rt *drplanev1.RoutingTable) map[string]Master {
	out := make(map[string]Master, len(rt.GetMasters()))
	for _, me := range rt.GetMasters() {
		if me.GetAddr() == "" || me.GetDc() == "" {
			continue
		}
		cl := me.GetCluster()
		if cl == "" {
			cl = rt.GetCluster()
		}
		if rt.GetCluster() != "" && cl != rt.GetCluster() {
			continue
		}
		if old, ok := out[me.GetDc()]; ok && old.Term > me.GetTerm() {
			continue
		}
		out[me.GetDc()] = Master{DC: me.GetDc(), Cluster: cl, Instance: me.GetInstance(), Addr: me.GetAddr(), Term: me.GetTerm()}
	}
	return out
}

// index precomputes every shard's Route.
func (t *table) index(shards []shardmap.Shard, dc string) {
	maxID := 0
	for _, s := range shards {
		maxID = max(maxID, s.ID)
	}
	if maxID < sparseFactor*len(shards) {
		t.dense = make([]Route, maxID+1)
	} else {
		t.sparse = make(map[int]*Route, len(shards))
	}
	for _, s := range shards {
		r := Route{
			Keyspace: t.keyspace, Shard: s.ID, Owner: s.Owner, Backup: s.Backup, State: s.State,
			Local: s.Owner == dc, Master: t.masters[s.Owner],
			Revision: s.Revision, MapRevision: t.revision,
		}
		if t.dense != nil {
			t.dense[s.ID] = r
		} else {
			t.sparse[s.ID] = &r
		}
	}
}

// route returns the route of key.
func (t *table) route(key string) (Route, error) {
	sr, err := t.lookup.LookupString(key)
	if err != nil {
		return Route{}, err
	}
	if t.dense != nil {
		return t.dense[sr.Shard], nil
	}
	return *t.sparse[sr.Shard], nil
}

// stateOf maps the wire state; UNSPECIFIED becomes "", which Compile
// rejects.
func stateOf(s drplanev1.ShardState) shardmap.State {
	switch s {
	case drplanev1.ShardState_SHARD_STATE_ACTIVE:
		return shardmap.Active
	case drplanev1.ShardState_SHARD_STATE_FROZEN:
		return shardmap.Frozen
	case drplanev1.ShardState_SHARD_STATE_MOVING:
		return shardmap.Moving
	}
	return ""
}

// closed reports whether the table refuses this DC's writes to shard id:
// it is FROZEN, owned by another DC, or not in the table.
func (t *table) closed(id int) bool {
	var r *Route
	switch {
	case t.dense != nil && id >= 0 && id < len(t.dense):
		r = &t.dense[id]
	case t.sparse != nil:
		r = t.sparse[id]
	}
	return r == nil || r.Keyspace == "" || r.State == shardmap.Frozen || !r.Local
}
