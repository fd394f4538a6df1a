package handoff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// routerTTL is the lease of a router stream's record: a coordinator that
// dies takes its streams' records with it this long after.
const routerTTL = 10

// rereadAfter is the pause before a handoff's wait reads etcd again after
// its watch broke.
const rereadAfter = 20 * time.Millisecond

// ErrUnknownStream means an acknowledgement named a stream that is not
// open (it ended, or its record expired).
var ErrUnknownStream = errors.New("handoff: unknown route stream")

// Routers keeps the records of the SDK routers' route streams
// (state.RouterStream) that handoffs wait for.
type Routers struct {
	st          *state.Store
	coordinator string
}

// NewRouters returns the registry of coordinator id.
func NewRouters(st *state.Store, coordinator string) *Routers {
	return &Routers{st: st, coordinator: coordinator}
}

// Open records a new stream on a lease of its own, kept alive until ctx
// ends or the returned close is called (which revokes it). It returns the
// stream's id.
func (r *Routers) Open(ctx context.Context, dc, client string, keyspaces []string) (string, func(), error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	cli := r.st.Client()
	lease, err := cli.Grant(ctx, routerTTL)
	if err != nil {
		return "", nil, fmt.Errorf("handoff: lease for route stream: %w", err)
	}
	rec := state.RouterStream{ID: id, DC: dc, Client: client, Coordinator: r.coordinator, Keyspaces: keyspaces,
		Acked: map[string]int64{}, Since: time.Now().UTC()}
	if _, err := state.Put(ctx, r.st, r.st.RouterKey(id), rec, state.PutOptions{PrevRev: 0, Lease: lease.ID}); err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(ctx), lease.ID)
		return "", nil, err
	}
	kctx, cancel := context.WithCancel(ctx)
	ka, err := cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		_, _ = cli.Revoke(context.WithoutCancel(ctx), lease.ID)
		return "", nil, fmt.Errorf("handoff: keep route stream lease: %w", err)
	}
	go func() {
		for range ka { //nolint:revive // drain keepalive responses
		}
	}()
	closeFn := func() {
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		_, _ = cli.Revoke(rctx, lease.ID)
	}
	return id, closeFn, nil
}

// Ack records that stream id applied keyspace's table at rev (a lower
// revision than recorded changes nothing).
func (r *Routers) Ack(ctx context.Context, id, keyspace string, rev int64) error {
	key := r.st.RouterKey(id)
	for range 5 {
		rec, modRev, err := state.Get[state.RouterStream](ctx, r.st, key)
		if errors.Is(err, state.ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrUnknownStream, id)
		}
		if err != nil {
			return err
		}
		if rec.Acked[keyspace] >= rev {
			return nil
		}
		if rec.Acked == nil {
			rec.Acked = map[string]int64{}
		}
		rec.Acked[keyspace] = rev
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		resp, err := r.st.Client().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
			Then(clientv3.OpPut(key, string(data), clientv3.WithIgnoreLease())).Commit()
		if err != nil {
			return fmt.Errorf("handoff: record ack: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("handoff: ack of stream %s kept conflicting", id)
}

// Wait waits until every open stream that watches keyspace acknowledged
// rev or later, or grace passed; it returns the streams that had not
// (stale), which the handoff then goes on without.
func (r *Routers) Wait(ctx context.Context, keyspace string, rev int64, grace time.Duration) ([]state.RouterStream, error) {
	behind := func(all map[string]state.RouterStream) []state.RouterStream {
		var out []state.RouterStream
		for _, s := range all {
			if s.Watches(keyspace) && s.Acked[keyspace] < rev {
				out = append(out, s)
			}
		}
		return out
	}
	all, _, err := follow(ctx, r.st, r.st.RouterPrefix(), true, time.Now().Add(grace), func(all map[string]state.RouterStream) bool {
		return len(behind(all)) == 0
	})
	if err != nil {
		return nil, err
	}
	stale := behind(all)
	sort.Slice(stale, func(i, j int) bool { return stale[i].ID < stale[j].ID })
	return stale, nil
}
