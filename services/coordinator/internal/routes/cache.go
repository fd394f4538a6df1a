package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// DefaultRetryDelay is the pause before reloading after a broken watch.
const DefaultRetryDelay = 250 * time.Millisecond

// errWatch means one of the cache's etcd watches ended.
var errWatch = errors.New("routes: watch ended")

// Options configures a Cache.
type Options struct {
	Store *state.Store
	// RetryDelay is the pause before reloading after a failed read or a
	// broken watch (DefaultRetryDelay when zero).
	RetryDelay time.Duration
	Logger     zerolog.Logger
}

// Master is a master record with the etcd revision it was read at.
type Master struct {
	state.MasterRecord
	Revision int64
}

// Entry is the routing state of one keyspace that has a shard map. It is
// immutable.
type Entry struct {
	Keyspace topology.Keyspace
	Map      shardmap.Map
	Table    *shardmap.Table
	// Masters are the master records of the keyspace's cluster, by DC.
	Masters map[string]Master
}

// Master returns the master of the keyspace's cluster in dc.
func (e *Entry) Master(dc string) (Master, bool) {
	m, ok := e.Masters[dc]
	return m, ok
}

// Cache is the routing state, kept current by Run. It is safe for
// concurrent use.
type Cache struct {
	o Options

	mu       sync.RWMutex
	topo     topology.Topology
	haveTopo bool
	maps     map[string]shardmap.Map
	masters  map[string]Master // by etcd key
	entries  map[string]*Entry
	subs     map[*Sub]struct{}

	ready     chan struct{}
	readyOnce sync.Once
}

// New returns an empty cache; Run fills it.
func New(o Options) *Cache {
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	return &Cache{
		o:       o,
		maps:    map[string]shardmap.Map{},
		masters: map[string]Master{},
		entries: map[string]*Entry{},
		subs:    map[*Sub]struct{}{},
		ready:   make(chan struct{}),
	}
}

// Ready is closed once the cache holds what etcd held at some point.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Topology returns the cached topology; ok is false before one is stored.
func (c *Cache) Topology() (topology.Topology, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.topo, c.haveTopo
}

// Entry returns the routing state of a keyspace that has a shard map.
func (c *Cache) Entry(keyspace string) (*Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[keyspace]
	return e, ok
}

// Entries returns the routing state of every keyspace that has a shard
// map, by name.
func (c *Cache) Entries() map[string]*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]*Entry, len(c.entries))
	for k, e := range c.entries {
		out[k] = e
	}
	return out
}

// Sub is a subscription to changes of the cache.
type Sub struct {
	c  *Cache
	ch chan struct{}
}

// Subscribe returns a subscription; close it when done.
func (c *Cache) Subscribe() *Sub {
	s := &Sub{c: c, ch: make(chan struct{}, 1)}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// C receives a value after one or more entries changed; changes that
// happen before it is read are coalesced into one.
func (s *Sub) C() <-chan struct{} { return s.ch }

// Close ends the subscription.
func (s *Sub) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
}

// Replace sets the whole state: the topology (nil: none stored), every
// keyspace's map and the master records by etcd key. Run uses it for each
// full (re)load; it also serves a fixed state without etcd.
func (c *Cache) Replace(topo *topology.Topology, maps []shardmap.Map, masters map[string]Master) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.haveTopo = topo != nil
	c.topo = topology.Topology{}
	if topo != nil {
		c.topo = *topo
	}
	c.maps = make(map[string]shardmap.Map, len(maps))
	for _, m := range maps {
		c.maps[m.Keyspace] = m
	}
	c.masters = make(map[string]Master, len(masters))
	for k, m := range masters {
		c.masters[k] = m
	}
	c.rebuildLocked()
	c.readyOnce.Do(func() { close(c.ready) })
}

// setTopology replaces the topology.
func (c *Cache) setTopology(t topology.Topology) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.topo, c.haveTopo = t, true
	c.rebuildLocked()
}

// setMap replaces one keyspace's map unless the cached one is newer.
func (c *Cache) setMap(m shardmap.Map) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.maps[m.Keyspace]; ok && cur.Revision >= m.Revision {
		return
	}
	c.maps[m.Keyspace] = m
	c.rebuildLocked()
}

// dropMap forgets the map of a keyspace that left the topology.
func (c *Cache) dropMap(keyspace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.maps, keyspace)
	c.rebuildLocked()
}

// setMaster sets (m non-nil) or removes the master record at key.
func (c *Cache) setMaster(key string, m *Master) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m == nil {
		delete(c.masters, key)
	} else {
		c.masters[key] = *m
	}
	c.rebuildLocked()
}

// rebuildLocked recomputes the entries, keeping those that did not change,
// and tells subscribers when one did.
func (c *Cache) rebuildLocked() {
	next := make(map[string]*Entry, len(c.topo.Keyspaces))
	changed := false
	for _, ks := range c.topo.Keyspaces {
		m, ok := c.maps[ks.Name]
		if !ok {
			continue
		}
		masters := map[string]Master{}
		for _, rec := range c.masters {
			if rec.Cluster == ks.Cluster {
				masters[rec.DC] = rec
			}
		}
		old := c.entries[ks.Name]
		if old != nil && old.Keyspace.Equal(ks) && old.Map.Revision == m.Revision && sameMasters(old.Masters, masters) {
			next[ks.Name] = old
			continue
		}
		e := &Entry{Keyspace: ks, Map: m, Masters: masters}
		if old != nil && old.Map.Revision == m.Revision {
			e.Table = old.Table
		} else {
			t, err := shardmap.Compile(m)
			if err != nil {
				// Save never stores such a map; keep serving the last good one.
				c.o.Logger.Error().Err(err).Str("keyspace", ks.Name).Int64("revision", m.Revision).Msg("stored shard map does not compile; ignored")
				if old != nil {
					next[ks.Name] = old
				}
				continue
			}
			e.Table = t
		}
		next[ks.Name] = e
		changed = true
	}
	if len(next) != len(c.entries) {
		changed = true
	}
	c.entries = next
	if !changed {
		return
	}
	for s := range c.subs {
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}

func sameMasters(a, b map[string]Master) bool {
	if len(a) != len(b) {
		return false
	}
	for dc, m := range a {
		if n, ok := b[dc]; !ok || n.Revision != m.Revision {
			return false
		}
	}
	return true
}

// keyspaces returns the cached topology's keyspace names, sorted.
func (c *Cache) keyspaces() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.topo.Keyspaces))
	for _, ks := range c.topo.Keyspaces {
		out = append(out, ks.Name)
	}
	sort.Strings(out)
	return out
}

// Run follows etcd until ctx ends (then it returns nil). After a failed
// read or a broken watch it reloads everything.
func (c *Cache) Run(ctx context.Context) error {
	for {
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.o.Logger.Warn().Err(err).Dur("retry_in", c.o.RetryDelay).Msg("routing cache: reloading from etcd")
		if !retry.Sleep(ctx, c.o.RetryDelay) {
			return nil
		}
	}
}

// load reads the topology, the master records and the shard maps, and
// returns the revision the topology and masters were read at.
func (c *Cache) load(ctx context.Context) (int64, error) {
	st := c.o.Store
	resp, err := st.Client().Txn(ctx).Then(
		clientv3.OpGet(st.TopologyKey()),
		clientv3.OpGet(st.Prefix("masters"), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("routes: read topology and masters: %w", err)
	}
	var topo *topology.Topology
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
		var t topology.Topology
		if err := json.Unmarshal(kvs[0].Value, &t); err != nil {
			return 0, fmt.Errorf("routes: decode topology: %w", err)
		}
		topo = &t
	}
	masters := map[string]Master{}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		var rec state.MasterRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			c.o.Logger.Warn().Err(err).Str("key", string(kv.Key)).Msg("master record does not decode; ignored")
			continue
		}
		masters[string(kv.Key)] = Master{MasterRecord: rec, Revision: kv.ModRevision}
	}
	var maps []shardmap.Map
	if topo != nil {
		for _, ks := range topo.Keyspaces {
			m, err := shardmap.Load(ctx, st, ks.Name)
			switch {
			case errors.Is(err, state.ErrNotFound):
				continue
			case err != nil:
				return 0, err
			}
			maps = append(maps, m)
		}
	}
	c.Replace(topo, maps, masters)
	return resp.Header.Revision, nil
}

// mapWatch is one keyspace's shard map watch.
type mapWatch struct {
	cancel context.CancelFunc
}

// follow loads everything, then applies watch events until a watch breaks
// or ctx ends.
func (c *Cache) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rev, err := c.load(ctx)
	if err != nil {
		return err
	}
	st := c.o.Store
	topoEvents := state.Watch[topology.Topology](ctx, st, st.TopologyKey(), false, rev+1)
	masterEvents := state.Watch[state.MasterRecord](ctx, st, st.Prefix("masters"), true, rev+1)

	var wg sync.WaitGroup
	defer wg.Wait()
	maps := make(chan shardmap.Map)
	broken := make(chan string, 1)
	watches := map[string]mapWatch{}
	defer func() {
		for _, w := range watches {
			w.cancel()
		}
	}()
	watchMaps := func() error {
		want := map[string]bool{}
		for _, ks := range c.keyspaces() {
			want[ks] = true
			if _, ok := watches[ks]; ok {
				continue
			}
			kctx, kcancel := context.WithCancel(ctx)
			ch, err := shardmap.Watch(kctx, st, ks)
			if err != nil {
				kcancel()
				return err
			}
			watches[ks] = mapWatch{cancel: kcancel}
			wg.Add(1)
			go func() {
				defer wg.Done()
				forward(kctx, ks, ch, maps, broken)
			}()
		}
		for ks, w := range watches {
			if !want[ks] {
				w.cancel()
				delete(watches, ks)
				c.dropMap(ks)
			}
		}
		return nil
	}
	if err := watchMaps(); err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-topoEvents:
			if !ok {
				return fmt.Errorf("%w: topology", errWatch)
			}
			if ev.Deleted {
				continue
			}
			c.setTopology(ev.Value)
			if err := watchMaps(); err != nil {
				return err
			}
		case ev, ok := <-masterEvents:
			if !ok {
				return fmt.Errorf("%w: masters", errWatch)
			}
			if ev.Deleted {
				c.setMaster(ev.Key, nil)
				continue
			}
			c.setMaster(ev.Key, &Master{MasterRecord: ev.Value, Revision: ev.Rev})
		case m := <-maps:
			c.setMap(m)
		case ks := <-broken:
			return fmt.Errorf("%w: shard map of %s", errWatch, ks)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// forward passes one keyspace's maps on until its watch ends; a watch that
// ends while ctx is live is reported on broken.
func forward(ctx context.Context, keyspace string, in <-chan shardmap.Map, out chan<- shardmap.Map, broken chan<- string) {
	for m := range in {
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	select {
	case broken <- keyspace:
	case <-ctx.Done():
	}
}

// WaitMap waits until the cached map of keyspace is at revision rev or
// later, or ctx ends; it reports whether it got there.
func (c *Cache) WaitMap(ctx context.Context, keyspace string, rev int64) bool {
	sub := c.Subscribe()
	defer sub.Close()
	for {
		if e, ok := c.Entry(keyspace); ok && e.Map.Revision >= rev {
			return true
		}
		select {
		case <-sub.C():
		case <-ctx.Done():
			return false
		}
	}
}
