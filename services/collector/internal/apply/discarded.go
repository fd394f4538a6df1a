package apply

import (
	"context"
	"encoding/json"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/retry"
)

// discards follows the divergence entries of kind discarded — requests
// their origin shipped and then lost in a lossy failover — so that a
// collector that had not applied one yet (a backlog, a DC that was down)
// refuses it rather than take a write its origin no longer has. The entry
// exists already; the refusal is counted and logged, never recorded again.
type discards struct {
	a   *Applier
	mu  sync.Mutex
	ids map[string]bool // divergence.Entry.ID()
	// keys maps an etcd key to its entry's id, for deletions.
	keys map[string]string
	// loaded is closed after the entries were read once: nothing is
	// applied before.
	loaded     chan struct{}
	loadedOnce sync.Once
}

func newDiscards(a *Applier) *discards {
	return &discards{a: a, ids: map[string]bool{}, keys: map[string]string{}, loaded: make(chan struct{})}
}

// has reports whether origin's request was discarded at its origin.
func (d *discards) has(origin, requestID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ids[origin+":"+requestID]
}

func (d *discards) put(key string, value []byte) {
	var e divergence.Entry
	if json.Unmarshal(value, &e) != nil || e.Kind != divergence.KindDiscarded {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids[e.ID()], d.keys[key] = true, e.ID()
}

func (d *discards) remove(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.keys[key]; ok {
		delete(d.ids, id)
		delete(d.keys, key)
	}
}

// run reads and watches the divergence entries until ctx ends.
func (d *discards) run(ctx context.Context) error {
	st := d.a.o.Store
	prefix := st.Prefix("divergence")
	for ctx.Err() == nil {
		resp, err := st.Client().Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			retry.Sleep(ctx, minBackoff)
			continue
		}
		d.mu.Lock()
		d.ids, d.keys = map[string]bool{}, map[string]string{}
		d.mu.Unlock()
		for _, kv := range resp.Kvs {
			d.put(string(kv.Key), kv.Value)
		}
		d.loadedOnce.Do(func() { close(d.loaded) })
		for wr := range st.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					d.put(string(ev.Kv.Key), ev.Kv.Value)
				case clientv3.EventTypeDelete:
					d.remove(string(ev.Kv.Key))
				}
			}
		}
		retry.Sleep(ctx, minBackoff)
	}
	return nil
}
