package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/topology"
)

// DefaultRoot is the default key prefix.
const DefaultRoot = "/drplane"

// Errors returned by the store.
var (
	ErrNotFound = errors.New("state: not found")
	// ErrConflict means a compare-and-swap lost: the key changed since it was read.
	ErrConflict = errors.New("state: revision conflict")
	// ErrFenced means the fencing token no longer holds: another holder took over.
	ErrFenced = errors.New("state: fenced out")
)

// Store reads and writes drplane's keys in etcd.
type Store struct {
	cli  *clientv3.Client
	root string
}

// New returns a store under root (DefaultRoot when empty).
func New(cli *clientv3.Client, root string) *Store {
	if root == "" {
		root = DefaultRoot
	}
	return &Store{cli: cli, root: strings.TrimRight(root, "/")}
}

// Client returns the underlying etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key joins parts under the root.
func (s *Store) Key(parts ...string) string {
	return s.root + "/" + path.Join(parts...)
}

// Prefix is Key with a trailing slash, for ranges over children.
func (s *Store) Prefix(parts ...string) string { return s.Key(parts...) + "/" }

// Fence is a fencing token: the key of an election candidacy and its create
// revision. A fenced write succeeds only while that key still exists with
// that revision, i.e. while the writer still holds the election.
type Fence struct {
	Key string
	Rev int64
}

func (f Fence) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)
}

// Get decodes the JSON value at key into a T and returns its mod revision.
func Get[T any](ctx context.Context, s *Store, key string) (T, int64, error) {
	var v T
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return v, 0, fmt.Errorf("state: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return v, 0, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return v, 0, fmt.Errorf("state: decode %s: %w", key, err)
	}
	return v, resp.Kvs[0].ModRevision, nil
}

// List decodes every value under prefix, in key order.
func List[T any](ctx context.Context, s *Store, prefix string) ([]T, int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("state: list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, 0, fmt.Errorf("state: decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, resp.Header.Revision, nil
}

// PutOptions qualify a write.
type PutOptions struct {
	// PrevRev, when >= 0, requires the key's mod revision to equal it
	// (0: the key must not exist). -1 writes unconditionally.
	PrevRev int64
	// Fence, when set, requires the fencing token to hold.
	Fence *Fence
	// Lease attaches the key to a lease.
	Lease clientv3.LeaseID
}

// Put writes v as JSON at key under the options and returns the new revision.
func Put[T any](ctx context.Context, s *Store, key string, v T, o PutOptions) (int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("state: encode %s: %w", key, err)
	}
	var opOpts []clientv3.OpOption
	if o.Lease != 0 {
		opOpts = append(opOpts, clientv3.WithLease(o.Lease))
	}
	var cmps []clientv3.Cmp
	if o.PrevRev >= 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", o.PrevRev))
	}
	if o.Fence != nil {
		cmps = append(cmps, o.Fence.cmp())
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(data), opOpts...)).Commit()
	if err != nil {
		return 0, fmt.Errorf("state: put %s: %w", key, err)
	}
	if !resp.Succeeded {
		if o.Fence != nil {
			f, ferr := s.cli.Get(ctx, o.Fence.Key)
			if ferr == nil && (len(f.Kvs) == 0 || f.Kvs[0].CreateRevision != o.Fence.Rev) {
				return 0, fmt.Errorf("%w: %s no longer held at revision %d", ErrFenced, o.Fence.Key, o.Fence.Rev)
			}
		}
		return 0, fmt.Errorf("%w: %s changed since revision %d", ErrConflict, key, o.PrevRev)
	}
	return resp.Header.Revision, nil
}

// Event is one change seen by Watch.
type Event[T any] struct {
	Key     string
	Value   T
	Deleted bool
	Rev     int64
}

// Watch streams typed changes under key (a prefix when prefix is true) from
// revision fromRev (0: from now). The channel closes when ctx ends or the
// watch fails; values that fail to decode are skipped with Err set.
func Watch[T any](ctx context.Context, s *Store, key string, prefix bool, fromRev int64) <-chan Event[T] {
	opts := []clientv3.OpOption{}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev))
	}
	out := make(chan Event[T], 16)
	wc := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, opts...)
	go func() {
		defer close(out)
		for resp := range wc {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				e := Event[T]{Key: string(ev.Kv.Key), Rev: ev.Kv.ModRevision, Deleted: ev.Type == clientv3.EventTypeDelete}
				if !e.Deleted {
					if err := json.Unmarshal(ev.Kv.Value, &e.Value); err != nil {
						continue
					}
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// TopologyKey is the etcd key of the topology.
func (s *Store) TopologyKey() string { return s.Key("topology") }

// Topology returns the stored topology and its revision.
func (s *Store) Topology(ctx context.Context) (topology.Topology, int64, error) {
	return Get[topology.Topology](ctx, s, s.TopologyKey())
}

// PutTopology validates t and stores it; prevRev as in PutOptions.
func (s *Store) PutTopology(ctx context.Context, t topology.Topology, prevRev int64) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	return Put(ctx, s, s.TopologyKey(), t, PutOptions{PrevRev: prevRev})
}

// ServiceRecord announces one running drplane process.
type ServiceRecord struct {
	Service    string    `json:"service"`
	ID         string    `json:"id"`
	DC         string    `json:"dc"`
	HealthAddr string    `json:"health_addr"`
	APIAddr    string    `json:"api_addr,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	Version    string    `json:"version"`
	// LogicImplemented is false while the service only runs its skeleton.
	LogicImplemented bool `json:"logic_implemented"`
}

// PutService registers rec on a lease (it vanishes when the lease ends).
func (s *Store) PutService(ctx context.Context, rec ServiceRecord, lease clientv3.LeaseID) error {
	_, err := Put(ctx, s, s.Key("services", rec.DC, rec.Service, rec.ID), rec, PutOptions{PrevRev: -1, Lease: lease})
	return err
}

// Services lists registered processes, of one DC or all when dc is empty.
func (s *Store) Services(ctx context.Context, dc string) ([]ServiceRecord, error) {
	p := s.Prefix("services")
	if dc != "" {
		p = s.Prefix("services", dc)
	}
	recs, _, err := List[ServiceRecord](ctx, s, p)
	return recs, err
}

// Cmp is the comparison a transaction guards itself with to hold only
// while the fencing token does.
func (f Fence) Cmp() clientv3.Cmp { return f.cmp() }
