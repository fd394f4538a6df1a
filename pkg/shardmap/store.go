package shardmap

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// Key returns the etcd key of a keyspace's shard map.
func Key(st *state.Store, keyspace string) string { return st.Key("shardmaps", keyspace) }

func checkKeyspace(keyspace string) error {
	if !topology.ValidName(keyspace) {
		return fmt.Errorf("%w: keyspace %q may contain only letters, digits, '-' and '_'", ErrInvalid, keyspace)
	}
	return nil
}

// stamp sets the map's revision and gives every shard changed by the write
// at rev (revision 0) that revision.
func stamp(m *Map, rev int64) {
	m.Revision = rev
	for i := range m.Shards {
		if m.Shards[i].Revision == 0 {
			m.Shards[i].Revision = rev
		}
		for j := range m.Shards[i].Fences {
			if m.Shards[i].Fences[j].Revision == 0 {
				m.Shards[i].Fences[j].Revision = rev
			}
		}
	}
}

// Load reads the shard map of keyspace. Its Revision is the key's etcd mod
// revision, and shards stored with revision 0 get that revision. A keyspace
// without a map fails with state.ErrNotFound. The map is returned as stored,
// valid or not (Save never stores an invalid one).
func Load(ctx context.Context, st *state.Store, keyspace string) (Map, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return Map{}, err
	}
	m, rev, err := state.Get[Map](ctx, st, Key(st, keyspace))
	if err != nil {
		return Map{}, err
	}
	if m.Keyspace != keyspace {
		return Map{}, fmt.Errorf("%w: the map stored for keyspace %q names keyspace %q", ErrInvalid, keyspace, m.Keyspace)
	}
	stamp(&m, rev)
	return m, nil
}

// Save validates m against topo and stores it, returning the new revision.
// An invalid map is rejected with an error wrapping ErrInvalid before
// anything is written, so the stored map stays as it was. The write is a
// compare-and-swap: prevRev is the mod revision the map was read at (0: no
// map may exist yet; -1: unconditional), and a mismatch fails with
// state.ErrConflict. When fence is set, the write also requires the fencing
// token (the leader's election key and revision) to hold, else it fails with
// state.ErrFenced. The coordinator leader always passes its fence; nil is
// for bootstrapping and tools.
func Save(ctx context.Context, st *state.Store, m Map, prevRev int64, fence *state.Fence, topo topology.Topology) (int64, error) {
	if err := m.Validate(topo); err != nil {
		return 0, err
	}
	return state.Put(ctx, st, Key(st, m.Keyspace), m, state.PutOptions{PrevRev: prevRev, Fence: fence})
}

// Watch returns the keyspace's current map (if one is stored) and then every
// new version, with Revision and shard revisions set as by Load. A slow
// reader never holds the watch up: versions it has not taken yet are
// replaced by newer ones, so it always receives the latest. Deletions,
// values that do not decode and maps naming another keyspace are skipped. The channel closes when ctx ends or
// the watch fails (for example when etcd loses its leader); the caller then
// watches again. The error reports an invalid keyspace name or a failed
// first read.
func Watch(ctx context.Context, st *state.Store, keyspace string) (<-chan Map, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return nil, err
	}
	key := Key(st, keyspace)
	resp, err := st.Client().Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("shardmap: read %s: %w", key, err)
	}
	var (
		pending Map
		have    bool
	)
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &pending); err == nil && pending.Keyspace == keyspace {
			stamp(&pending, resp.Kvs[0].ModRevision)
			have = true
		}
	}
	events := state.Watch[Map](ctx, st, key, false, resp.Header.Revision+1)
	out := make(chan Map)
	go func() {
		defer close(out)
		for {
			var send chan Map
			if have {
				send = out
			}
			select {
			case ev, ok := <-events:
				if !ok {
					if have {
						select {
						case out <- pending:
						case <-ctx.Done():
						}
					}
					return
				}
				if ev.Deleted || ev.Value.Keyspace != keyspace {
					continue
				}
				pending, have = ev.Value, true
				stamp(&pending, ev.Rev)
			case send <- pending:
				have = false
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
