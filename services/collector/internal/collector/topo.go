package collector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// topoRetry paces the retries of topology reads and stream set-up.
const topoRetry = time.Second

// topoWatch follows the topology in etcd: it hands the keyspaces to the
// apply path and keeps the DC's streams in step with the DCs it knows,
// ensuring them at the first topology, again whenever the peers change, and
// every topoRetry while a set-up failed or a peer could not be sourced yet.
type topoWatch struct {
	st  *state.Store
	dc  string
	js  jetstream.JetStream
	log zerolog.Logger

	mu        sync.Mutex
	keyspaces []topology.Keyspace
	want      []string // peers of the last topology naming this DC; nil before
	changed   chan struct{}
	ready     chan struct{}
}

func newTopoWatch(st *state.Store, dc string, js jetstream.JetStream, log zerolog.Logger) *topoWatch {
	return &topoWatch{
		st: st, dc: dc, js: js, log: log.With().Str("component", "topology").Logger(),
		changed: make(chan struct{}, 1), ready: make(chan struct{}),
	}
}

// Ready is closed once a topology naming this DC was read and the streams
// were set up (with the peers that could be sourced then).
func (w *topoWatch) Ready() <-chan struct{} { return w.ready }

// Keyspaces returns the current topology's keyspaces.
func (w *topoWatch) Keyspaces() []topology.Keyspace {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keyspaces
}

// Run reads the topology, follows its changes and keeps the streams in
// step until ctx ends.
func (w *topoWatch) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		w.watch(gctx)
		return nil
	})
	g.Go(func() error {
		w.keep(gctx)
		return nil
	})
	return g.Wait()
}

// watch reads the topology and follows its changes until ctx ends.
func (w *topoWatch) watch(ctx context.Context) {
	for ctx.Err() == nil {
		t, rev, err := w.st.Topology(ctx)
		if err != nil {
			if errors.Is(err, state.ErrNotFound) {
				w.log.Warn().Msg("no topology in etcd yet")
			} else if ctx.Err() == nil {
				w.log.Warn().Err(err).Msg("read topology")
			}
			retry.Sleep(ctx, topoRetry)
			continue
		}
		w.use(t)
		for ev := range state.Watch[topology.Topology](ctx, w.st, w.st.TopologyKey(), false, rev+1) {
			if !ev.Deleted {
				w.use(ev.Value)
			}
		}
	}
}

// use adopts t: its keyspaces at once, its peers for keep.
func (w *topoWatch) use(t topology.Topology) {
	if _, ok := t.DC(w.dc); !ok {
		w.log.Error().Str("dc", w.dc).Msg("this DC is not in the topology; applying nothing until it is")
		return
	}
	peers := []string{}
	for _, dc := range t.DCs {
		if dc.Name != w.dc {
			peers = append(peers, dc.Name)
		}
	}
	slices.Sort(peers)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keyspaces = slices.Clone(t.Keyspaces)
	if w.want != nil && slices.Equal(w.want, peers) {
		return
	}
	w.want = peers
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// keep sets up the streams for the wanted peers whenever they change, and
// again every topoRetry while the set-up fails or leaves peers out (a peer
// whose sourcing consumer does not answer yet, see
// embednats.EnsureInbound), until ctx ends.
func (w *topoWatch) keep(ctx context.Context) {
	var done, waiting []string // done: the peers last set up in full; nil before
	for {
		w.mu.Lock()
		want := w.want
		w.mu.Unlock()
		again := false
		if want != nil && (done == nil || !slices.Equal(done, want)) {
			pending, err := ensureStreams(ctx, w.js, w.dc, want)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					w.log.Warn().Err(err).Msg("streams not set up yet; retrying")
				}
				again = true
			case len(pending) > 0:
				if !slices.Equal(pending, waiting) {
					w.log.Info().Strs("peers", want).Strs("waiting_for", pending).
						Msg("streams set up; the inbound stream sources the waiting peers once their outbound stream's consumer for this DC answers")
				}
				waiting, again = pending, true
				w.setReady()
			default:
				w.log.Info().Strs("peers", want).Msg("streams ensured")
				done, waiting = want, nil
				w.setReady()
			}
		}
		if !w.wait(ctx, again) {
			return
		}
	}
}

// wait waits for the peers to change, or with again for topoRetry at most;
// it reports false when ctx ended.
func (w *topoWatch) wait(ctx context.Context, again bool) bool {
	var tick <-chan time.Time
	if again {
		t := time.NewTimer(topoRetry)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.changed:
	case <-tick:
	}
	return true
}

func (w *topoWatch) setReady() {
	select {
	case <-w.ready:
	default:
		close(w.ready)
	}
}

// ensureStreams sets up the streams the collector owns: IN_<dc> sourcing
// the peers' outbound streams (with the replay subject), DLQ_<dc> and
// LEDGER_<dc>. It returns the peers IN_<dc> does not source yet.
func ensureStreams(ctx context.Context, js jetstream.JetStream, dc string, peers []string) ([]string, error) {
	pending, err := embednats.EnsureInbound(ctx, js, dc, peers, embednats.StreamOptions{})
	if err != nil {
		return nil, err
	}
	if err := embednats.EnsureInboundReplay(ctx, js, dc); err != nil {
		return nil, err
	}
	if err := embednats.EnsureDLQ(ctx, js, dc, embednats.StreamOptions{}); err != nil {
		return nil, err
	}
	return pending, embednats.EnsureLedger(ctx, js, dc, embednats.StreamOptions{})
}
