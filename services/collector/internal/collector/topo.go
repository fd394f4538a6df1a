package collector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// topoRetry paces the retries of topology reads and stream set-up.
const topoRetry = time.Second

// topoWatch follows the topology in etcd: it hands the keyspaces to the
// apply path and keeps the DC's streams in step with the DCs it knows,
// ensuring them at the first topology and again whenever the peers change.
type topoWatch struct {
	st  *state.Store
	dc  string
	js  jetstream.JetStream
	log zerolog.Logger

	mu        sync.Mutex
	keyspaces []topology.Keyspace
	peers     []string // as last ensured; nil before
	ready     chan struct{}
}

func newTopoWatch(st *state.Store, dc string, js jetstream.JetStream, log zerolog.Logger) *topoWatch {
	return &topoWatch{st: st, dc: dc, js: js, log: log.With().Str("component", "topology").Logger(), ready: make(chan struct{})}
}

// Ready is closed once a topology naming this DC was read and the streams
// were ensured.
func (w *topoWatch) Ready() <-chan struct{} { return w.ready }

// Keyspaces returns the current topology's keyspaces.
func (w *topoWatch) Keyspaces() []topology.Keyspace {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keyspaces
}

// Run reads the topology and follows its changes until ctx ends.
func (w *topoWatch) Run(ctx context.Context) error {
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
		w.use(ctx, t)
		for ev := range state.Watch[topology.Topology](ctx, w.st, w.st.TopologyKey(), false, rev+1) {
			if !ev.Deleted {
				w.use(ctx, ev.Value)
			}
		}
	}
	return nil
}

// use adopts t: keyspaces at once, streams when the peers changed
// (retrying until they are set up or ctx ends).
func (w *topoWatch) use(ctx context.Context, t topology.Topology) {
	if _, ok := t.DC(w.dc); !ok {
		w.log.Error().Str("dc", w.dc).Msg("this DC is not in the topology; applying nothing until it is")
		return
	}
	w.mu.Lock()
	w.keyspaces = slices.Clone(t.Keyspaces)
	known := w.peers
	w.mu.Unlock()
	var peers []string
	for _, dc := range t.DCs {
		if dc.Name != w.dc {
			peers = append(peers, dc.Name)
		}
	}
	slices.Sort(peers)
	if known != nil && slices.Equal(known, peers) {
		return
	}
	for {
		err := ensureStreams(ctx, w.js, w.dc, peers)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Warn().Err(err).Msg("streams not set up yet; retrying")
		if !retry.Sleep(ctx, topoRetry) {
			return
		}
	}
	w.log.Info().Strs("peers", peers).Msg("streams ensured")
	w.mu.Lock()
	w.peers = append([]string{}, peers...)
	w.mu.Unlock()
	select {
	case <-w.ready:
	default:
		close(w.ready)
	}
}

// ensureStreams sets up the streams the collector owns: IN_<dc> sourcing
// every peer's outbound stream (with the replay subject), DLQ_<dc> and
// LEDGER_<dc>.
func ensureStreams(ctx context.Context, js jetstream.JetStream, dc string, peers []string) error {
	if err := embednats.EnsureInbound(ctx, js, dc, peers, embednats.StreamOptions{}); err != nil {
		return err
	}
	if err := embednats.EnsureInboundReplay(ctx, js, dc); err != nil {
		return err
	}
	if err := embednats.EnsureDLQ(ctx, js, dc, embednats.StreamOptions{}); err != nil {
		return err
	}
	return embednats.EnsureLedger(ctx, js, dc, embednats.StreamOptions{})
}
