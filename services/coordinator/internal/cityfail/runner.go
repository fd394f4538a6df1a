package cityfail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Flipper *Flipper
	// RetryDelay is the pause before an interrupted failover is run again
	// (DefaultRetryDelay when zero).
	RetryDelay time.Duration
	// ReturnEvery and ReturnSettle time the return watch
	// (DefaultReturnEvery, DefaultReturnSettle when zero).
	ReturnEvery, ReturnSettle time.Duration
	Logger                    zerolog.Logger
}

// DefaultRetryDelay is the pause before an interrupted failover is run
// again.
const DefaultRetryDelay = 200 * time.Millisecond

// Runner runs the city failovers stored at /operations/<id> while its
// coordinator leads: the automatic ones Declare stores, and the
// operators' ones any coordinator stores.
type Runner struct {
	o RunnerOptions
	f *Flipper
}

// NewRunner returns a runner.
func NewRunner(o RunnerOptions) *Runner {
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.ReturnEvery <= 0 {
		o.ReturnEvery = DefaultReturnEvery
	}
	if o.ReturnSettle <= 0 {
		o.ReturnSettle = DefaultReturnSettle
	}
	return &Runner{o: o, f: o.Flipper}
}

// Lead runs every unfinished failover, oldest first, then waits for new
// ones, until ctx ends (the leadership ended). An interrupted failover
// (etcd failed) is run again after the retry delay.
func (r *Runner) Lead(ctx context.Context, fence state.Fence) error {
	for {
		all, rev, err := list(ctx, r.f.o.Store)
		if err != nil {
			if !retry.Sleep(ctx, r.o.RetryDelay) {
				return nil
			}
			continue
		}
		interrupted := false
		for _, rec := range all {
			if !rec.State.Unfinished() {
				continue
			}
			if _, err := r.f.Run(ctx, fence, rec); err != nil && !permanent(err) {
				interrupted = true
				break
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if interrupted {
			if !retry.Sleep(ctx, r.o.RetryDelay) {
				return nil
			}
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		events := r.f.o.Store.Client().Watch(wctx, r.f.o.Store.Prefix("operations"), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		select {
		case <-events:
		case <-ctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Declare stores the automatic failover of the DC req names, for Lead to
// run, unless one of that DC is unfinished or HELD for an operator, or the
// DC owns no shard. It returns the stored record, or why none was stored
// (ErrNothingToFlip, ErrOpen).
func (r *Runner) Declare(ctx context.Context, fence state.Fence, req Request) (Record, error) {
	all, _, err := list(ctx, r.f.o.Store)
	if err != nil {
		return Record{}, err
	}
	for _, rec := range all {
		if rec.DC == req.DC && (rec.State.Unfinished() || rec.State == Held) {
			return rec, &OpenError{ID: rec.ID, DC: rec.DC, State: rec.State}
		}
	}
	n, err := Owned(ctx, r.f.o.Store, req.DC)
	if err != nil {
		return Record{}, err
	}
	if n == 0 {
		return Record{}, fmt.Errorf("%w: %s", ErrNothingToFlip, req.DC)
	}
	req.Operator = ""
	rec, err := r.f.Create(ctx, &fence, r.f.NewRecord(req, r.f.o.Actor))
	if err != nil {
		return rec, err
	}
	r.o.Logger.Warn().Str("dc", req.DC).Str("failover", rec.ID).Str("reason", req.Reason).Msg("DC lost: city failover stored")
	return rec, nil
}

// ErrOpen means a failover of the DC is unfinished or held.
var ErrOpen = errors.New("cityfail: a city failover of the DC is open")

// OpenError names the open failover; it matches ErrOpen.
type OpenError struct {
	ID, DC string
	State  State
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%v: %s is %s for %s", ErrOpen, e.ID, e.State, e.DC)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Owned counts the shards dc owns in every keyspace of the topology.
func Owned(ctx context.Context, st *state.Store, dc string) (int, error) {
	topo, _, err := st.Topology(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ks := range topo.Keyspaces {
		m, err := shardmap.Load(ctx, st, ks.Name)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		for _, s := range m.Shards {
			if s.Owner == dc {
				n++
			}
		}
	}
	return n, nil
}

// list returns every city failover, oldest first, and the revision of the
// read.
func list(ctx context.Context, st *state.Store) ([]Record, int64, error) {
	resp, err := st.Client().Get(ctx, st.Prefix("operations"), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("cityfail: list: %w", err)
	}
	out := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Record
		if json.Unmarshal(kv.Value, &r) != nil || r.Kind != KindCityFailover {
			continue
		}
		r.Revision = kv.ModRevision
		out = append(out, r)
	}
	return out, resp.Header.Revision, nil
}
