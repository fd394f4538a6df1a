package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/reship/internal/capture"
)

// ErrNotReady is returned by Split before the topology was loaded.
var ErrNotReady = errors.New("route: topology not loaded yet")

// retryPause is the pause before a failed read or an ended watch is retried.
const retryPause = 250 * time.Millisecond

// Options configure a Router.
type Options struct {
	Store *state.Store
	// DC and Cluster name the captured cluster: only keyspaces stored in it
	// are routed.
	DC, Cluster string
	Logger      zerolog.Logger
}

// Result is what Split made of one transaction.
type Result struct {
	Events []*drplanev1.ChangeEvent
	// Diverged are the events of shards this DC handed off before it
	// captured them (shardmap.Diverged): not to be shipped, but recorded
	// as divergence. Fences holds the fence each was refused by.
	Diverged []*drplanev1.ChangeEvent
	Fences   []shardmap.Fence
	// Owners holds the owner of each diverged event's shard.
	Owners []string
	// Unmapped counts rows of tables outside every keyspace (the topology
	// changed since they were captured); BadKey rows whose shard key could
	// not be routed.
	Unmapped, BadKey int
}

// snapshot is what the router derived from one version of the topology.
type snapshot struct {
	byTable map[string]topology.Keyspace // "db.table" → keyspace
	// barriers are the keyspaces by database whose barrier table
	// (state.BarrierTable) is captured.
	barriers map[string][]topology.Keyspace
	peers    []string
	// instances are the addresses of the captured cluster's instances.
	instances []topology.Instance
}

// Router routes captured rows.
type Router struct {
	o    Options
	snap atomic.Pointer[snapshot]

	mu      sync.Mutex
	tables  map[string]*shardmap.Table
	maps    map[string]shardmap.Map
	changed chan struct{} // closed and replaced when a map or the topology changes
	ready   chan struct{}
	watches map[string]context.CancelFunc
}

// New returns a router; Run keeps it current.
func New(o Options) *Router {
	return &Router{
		o: o, tables: map[string]*shardmap.Table{}, maps: map[string]shardmap.Map{}, changed: make(chan struct{}),
		ready: make(chan struct{}), watches: map[string]context.CancelFunc{},
	}
}

// Ready is closed once the topology has been loaded.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Wanted reports whether rows of schema.table belong to a keyspace.
func (r *Router) Wanted(schema, table string) bool {
	s := r.snap.Load()
	if s == nil {
		return false
	}
	if _, ok := s.byTable[schema+"."+table]; ok {
		return true
	}
	return table == state.BarrierTable && len(s.barriers[schema]) > 0
}

// Peers returns the other DCs of the topology, sorted, and a channel closed
// at the next change of the topology or of a shard map.
func (r *Router) Peers() ([]string, <-chan struct{}) {
	r.mu.Lock()
	ch := r.changed
	r.mu.Unlock()
	s := r.snap.Load()
	if s == nil {
		return nil, ch
	}
	return slices.Clone(s.peers), ch
}

// Instances returns the instances of the captured cluster in the topology
// (none before it was loaded).
func (r *Router) Instances() []topology.Instance {
	s := r.snap.Load()
	if s == nil {
		return nil
	}
	return slices.Clone(s.instances)
}

// notify signals a change; r.mu must be held.
func (r *Router) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Run loads the topology, follows it and the shard maps of its keyspaces
// until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		r.mu.Lock()
		for ks, cancel := range r.watches {
			cancel()
			delete(r.watches, ks)
		}
		r.mu.Unlock()
		wg.Wait()
	}()
	key := r.o.Store.TopologyKey()
	for ctx.Err() == nil {
		topo, rev, err := r.o.Store.Topology(ctx)
		switch {
		case err == nil:
			r.use(ctx, &wg, topo)
		case errors.Is(err, state.ErrNotFound):
			r.o.Logger.Warn().Msg("no topology in etcd yet")
		default:
			if ctx.Err() == nil {
				r.o.Logger.Warn().Err(err).Msg("read topology")
			}
			retry.Sleep(ctx, retryPause)
			continue
		}
		if rev == 0 {
			// Nothing stored yet: poll until something is.
			retry.Sleep(ctx, retryPause)
			continue
		}
		for ev := range state.Watch[topology.Topology](ctx, r.o.Store, key, false, rev+1) {
			if !ev.Deleted {
				r.use(ctx, &wg, ev.Value)
			}
		}
		retry.Sleep(ctx, retryPause)
	}
	return nil
}

// use installs a version of the topology and starts or stops shard map
// watches to match its keyspaces.
func (r *Router) use(ctx context.Context, wg *sync.WaitGroup, topo topology.Topology) {
	s := &snapshot{byTable: map[string]topology.Keyspace{}, barriers: map[string][]topology.Keyspace{}}
	for _, dc := range topo.DCs {
		if dc.Name != r.o.DC {
			s.peers = append(s.peers, dc.Name)
		}
	}
	slices.Sort(s.peers)
	for _, c := range topo.Clusters {
		if c.DC == r.o.DC && c.Name == r.o.Cluster {
			s.instances = slices.Clone(c.Instances)
		}
	}
	for _, ks := range topo.Keyspaces {
		if ks.Cluster == r.o.Cluster {
			for _, tb := range ks.AllTables() {
				s.byTable[ks.Database+"."+tb] = ks
			}
			s.barriers[ks.Database] = append(s.barriers[ks.Database], ks)
		}
	}
	r.snap.Store(s)

	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	for _, ks := range s.byTable {
		want[ks.Name] = true
		if _, ok := r.watches[ks.Name]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		r.watches[ks.Name] = cancel
		wg.Go(func() { r.watchMap(wctx, ks.Name) })
	}
	for ks, cancel := range r.watches {
		if !want[ks] {
			cancel()
			delete(r.watches, ks)
			delete(r.tables, ks)
			delete(r.maps, ks)
		}
	}
	select {
	case <-r.ready:
	default:
		close(r.ready)
	}
	r.notify()
}

// watchMap keeps the compiled shard map of one keyspace current.
func (r *Router) watchMap(ctx context.Context, keyspace string) {
	log := r.o.Logger.With().Str("keyspace", keyspace).Logger()
	for ctx.Err() == nil {
		maps, err := shardmap.Watch(ctx, r.o.Store, keyspace)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Msg("watch shard map")
			}
			retry.Sleep(ctx, retryPause)
			continue
		}
		for m := range maps {
			t, err := shardmap.Compile(m)
			if err != nil {
				log.Error().Err(err).Int64("revision", m.Revision).Msg("stored shard map does not compile; keeping the previous one")
				continue
			}
			r.mu.Lock()
			if _, ok := r.watches[keyspace]; ok {
				r.tables[keyspace] = t
				r.maps[keyspace] = m
				r.notify()
			}
			r.mu.Unlock()
			log.Info().Int64("revision", m.Revision).Int("shards", t.Len()).Msg("shard map loaded")
		}
		retry.Sleep(ctx, retryPause)
	}
}

// table returns the keyspace's shard map, waiting until it is loaded.
func (r *Router) table(ctx context.Context, keyspace string) (*shardmap.Table, error) {
	warned := false
	for {
		r.mu.Lock()
		t, ch := r.tables[keyspace], r.changed
		r.mu.Unlock()
		if t != nil {
			return t, nil
		}
		if !warned {
			r.o.Logger.Warn().Str("keyspace", keyspace).Msg("waiting for the keyspace's shard map")
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// Split builds the ChangeEvents of one transaction. It waits for shard
// maps that are not loaded yet and fails only when ctx ends or before the
// topology was loaded.
func (r *Router) Split(ctx context.Context, txn *capture.Txn) (Result, error) {
	var res Result
	s := r.snap.Load()
	if s == nil {
		return res, ErrNotReady
	}
	type dest struct {
		keyspace string
		shard    int
	}
	index := map[dest]*drplanev1.ChangeEvent{}
	keyspaces := map[string]bool{}
	tables := map[string]*shardmap.Table{}
	var commit, captured *timestamppb.Timestamp
	for i := range txn.Rows {
		row := &txn.Rows[i]
		if row.Table == state.BarrierTable {
			if evs, ok := r.barrier(s, txn, row); ok {
				res.Events = append(res.Events, evs...)
				continue
			}
		}
		ks, ok := s.byTable[row.Schema+"."+row.Table]
		if !ok {
			res.Unmapped++
			continue
		}
		t, ok := tables[ks.Name]
		if !ok {
			var err error
			if t, err = r.table(ctx, ks.Name); err != nil {
				return res, err
			}
			tables[ks.Name] = t
		}
		key, ok := shardKey(row, ks.ShardKey)
		if !ok {
			res.BadKey++
			r.o.Logger.Error().Str("keyspace", ks.Name).Str("gtid", txn.GTID).Str("shard_key", ks.ShardKey).
				Msg("row without a usable shard key value: not shipped")
			continue
		}
		rt, err := t.Lookup(key)
		if err != nil {
			res.BadKey++
			r.o.Logger.Error().Err(err).Str("keyspace", ks.Name).Str("gtid", txn.GTID).Bytes("key", key).
				Msg("shard key outside the map's key space: not shipped")
			continue
		}
		d := dest{ks.Name, rt.Shard}
		ev, ok := index[d]
		if !ok {
			if commit == nil {
				commit, captured = timestamppb.New(txn.CommitTime), timestamppb.New(txn.CapturedAt)
			}
			ev = &drplanev1.ChangeEvent{
				OriginDc: r.o.DC, Gtid: txn.GTID, Keyspace: ks.Name, Shard: int32(rt.Shard),
				Schema: row.Schema, Table: row.Table, CommitTime: commit, CapturedAt: captured,
				Position: txn.Position,
			}
			index[d] = ev
			keyspaces[ks.Name] = true
			res.Events = append(res.Events, ev)
		}
		ev.Rows = append(ev.Rows, &drplanev1.RowChange{Op: row.Op, Key: row.Key, Before: row.Before, After: row.After})
	}
	kept := res.Events[:0]
	for _, ev := range res.Events {
		if ev.GetBarrier() == "" {
			ev.RequestId = RequestID(txn.GTID, ev.Keyspace, int(ev.Shard), len(keyspaces) > 1)
			if fence, owner, bad := r.diverged(ev); bad {
				res.Diverged = append(res.Diverged, ev)
				res.Fences = append(res.Fences, fence)
				res.Owners = append(res.Owners, owner)
				continue
			}
		}
		kept = append(kept, ev)
	}
	res.Events = kept
	return res, nil
}

// Owner returns the owner of a shard in the current map ("" when the map
// or the shard is unknown).
func (r *Router) Owner(keyspace string, shard int32) string {
	r.mu.Lock()
	m, ok := r.maps[keyspace]
	r.mu.Unlock()
	if !ok {
		return ""
	}
	sh, ok := m.Shard(int(shard))
	if !ok {
		return ""
	}
	return sh.Owner
}

// diverged checks an event against its shard's fences.
func (r *Router) diverged(ev *drplanev1.ChangeEvent) (shardmap.Fence, string, bool) {
	r.mu.Lock()
	m, ok := r.maps[ev.Keyspace]
	r.mu.Unlock()
	if !ok {
		return shardmap.Fence{}, "", false
	}
	sh, ok := m.Shard(int(ev.Shard))
	if !ok {
		return shardmap.Fence{}, "", false
	}
	f, bad := shardmap.Diverged(sh, r.o.DC, ev.Gtid)
	return f, sh.Owner, bad
}

// barrier turns a row of a keyspace database's barrier table (written by
// this DC's collector for a handoff) into one barrier event per shard it
// names; ok is false for a row that is not one.
func (r *Router) barrier(s *snapshot, txn *capture.Txn, row *capture.Row) ([]*drplanev1.ChangeEvent, bool) {
	if row.Op == drplanev1.RowOp_ROW_OP_DELETE || len(s.barriers[row.Schema]) == 0 {
		return nil, false
	}
	var id, keyspace, shards string
	for _, c := range row.After {
		v, _ := KeyBytes(c.GetValue())
		switch c.GetName() {
		case "id":
			id = string(v)
		case "keyspace":
			keyspace = string(v)
		case "shards":
			shards = string(v)
		}
	}
	known := false
	for _, ks := range s.barriers[row.Schema] {
		known = known || ks.Name == keyspace
	}
	if id == "" || !known {
		r.o.Logger.Error().Str("gtid", txn.GTID).Str("schema", row.Schema).Str("keyspace", keyspace).
			Msg("barrier row without an id or for an unknown keyspace: not shipped")
		return []*drplanev1.ChangeEvent{}, true
	}
	commit, captured := timestamppb.New(txn.CommitTime), timestamppb.New(txn.CapturedAt)
	var out []*drplanev1.ChangeEvent
	for _, f := range strings.Split(shards, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			continue
		}
		out = append(out, &drplanev1.ChangeEvent{
			OriginDc: r.o.DC, RequestId: txn.GTID + "/barrier/" + strconv.Itoa(n), Gtid: txn.GTID, Keyspace: keyspace,
			Shard: int32(n), Schema: row.Schema, CommitTime: commit, CapturedAt: captured, //nolint:gosec // shard ids are small
			Position: txn.Position, Barrier: id,
		})
	}
	return out, true
}

// RequestID names the request of one transaction in one shard:
// "<gtid>/<shard>", or "<gtid>/<keyspace>/<shard>" when the transaction
// touched several keyspaces.
func RequestID(gtid, keyspace string, shard int, multiKeyspace bool) string {
	if multiKeyspace {
		return gtid + "/" + keyspace + "/" + strconv.Itoa(shard)
	}
	return gtid + "/" + strconv.Itoa(shard)
}

// shardKey returns the bytes of the row's shard-key value.
func shardKey(row *capture.Row, column string) ([]byte, bool) {
	image := row.After
	if row.Op == drplanev1.RowOp_ROW_OP_DELETE {
		image = row.Before
	}
	for _, c := range image {
		if c.Name == column {
			return KeyBytes(c.Value)
		}
	}
	return nil, false
}

// KeyBytes turns a column value into the key bytes clients route by: the
// decimal text of an integer, the UTF-8 bytes of text, raw bytes as they
// are. NULL and floating-point values are not keys.
func KeyBytes(v *drplanev1.Value) ([]byte, bool) {
	switch k := v.GetKind().(type) {
	case *drplanev1.Value_Int:
		return strconv.AppendInt(nil, k.Int, 10), true
	case *drplanev1.Value_Uint:
		return strconv.AppendUint(nil, k.Uint, 10), true
	case *drplanev1.Value_Text:
		return []byte(k.Text), true
	case *drplanev1.Value_Raw:
		return k.Raw, true
	}
	return nil, false
}

// String describes a result for logs.
func (r Result) String() string {
	return fmt.Sprintf("%d events, %d unmapped rows, %d unroutable rows", len(r.Events), r.Unmapped, r.BadKey)
}
