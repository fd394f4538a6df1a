package router

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/retry"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// maxSweepEvery bounds the period of the handle sweep.
const maxSweepEvery = time.Second

// Run keeps a WatchRoutes stream open and applies every routing table it
// delivers, each keyspace's table swapped in whole. When the stream ends it
// reopens it after a backoff (the coordinator then sends every watched
// keyspace's table again, so the router catches up on what it missed); it
// retries every failure, logging them, until ctx ends. Run returns nil when
// ctx ends, after closing every master handle it opened; WriteDB fails with
// ErrClosed from then on while Route keeps answering from the last tables.
// Run may be called once.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		r.dbs.closeAll()
	}()
	wg.Go(func() { r.sweepLoop(ctx) })

	backoff := r.o.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.m.reconnects.Inc()
		}
		delivered, err := r.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.markDown()
		if delivered {
			backoff = r.o.MinBackoff
		}
		wait := jitter(backoff)
		r.logStreamError(err, wait)
		if !retry.Sleep(ctx, wait) {
			return nil
		}
		backoff = min(2*backoff, r.o.MaxBackoff)
	}
}

// watch runs one stream until it fails; delivered reports whether it
// delivered at least one table.
func (r *Router) watch(ctx context.Context) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if len(r.o.Keyspaces) == 0 {
		if err := r.learnKeyspaces(ctx); err != nil {
			return false, err
		}
	}
	stream, err := r.client.WatchRoutes(ctx, &drplanev1.WatchRoutesRequest{Keyspaces: r.o.Keyspaces, Dc: r.o.DC, Client: r.o.Client},
		grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("open route stream: %w", err)
	}
	acks := make(chan ackJob, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { r.ackLoop(ctx, acks) })
	for {
		msg, err := stream.Recv()
		if err != nil {
			return delivered, fmt.Errorf("route stream: %w", err)
		}
		if !delivered {
			delivered = true
			r.markUp()
		}
		if t := r.apply(msg.GetTable()); t != nil && msg.GetStreamId() != "" {
			select {
			case acks <- ackJob{stream: msg.GetStreamId(), t: t}:
			case <-ctx.Done():
				return delivered, ctx.Err()
			}
		}
	}
}

// ackJob is a table to acknowledge once the writes it closed drained.
type ackJob struct {
	stream string
	t      *table
}

// ackLoop acknowledges applied tables in order: first it waits (at most
// Options.AckDrain) for the writes running through Write on shards the
// table closed, then it calls AckRoutes. A failed acknowledgement is
// logged and not retried: the handoff waiting for it runs into its grace,
// and the next table is acknowledged again.
func (r *Router) ackLoop(ctx context.Context, jobs <-chan ackJob) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			if !r.inflight.drain(j.t.keyspace, j.t.closed, time.Now().Add(r.o.AckDrain)) {
				r.log.Warn().Str("keyspace", j.t.keyspace).Int64("map_revision", j.t.revision).Dur("waited", r.o.AckDrain).
					Msg("writes to closed shards still running; acknowledging the routing table anyway")
			}
			_, err := r.client.AckRoutes(ctx, &drplanev1.AckRoutesRequest{StreamId: j.stream, Keyspace: j.t.keyspace, MapRevision: j.t.revision})
			if err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Str("keyspace", j.t.keyspace).Int64("map_revision", j.t.revision).Msg("acknowledging the routing table failed")
			}
		}
	}
}

// learnKeyspaces asks the coordinator which keyspaces exist, for readiness
// and for telling "not ready" from "unknown" when watching all.
func (r *Router) learnKeyspaces(ctx context.Context) error {
	resp, err := r.topo.GetTopology(ctx, &drplanev1.GetTopologyRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("list keyspaces: %w", err)
	}
	known := map[string]bool{}
	for _, ks := range resp.GetTopology().GetKeyspaces() {
		if ks.GetName() != "" {
			known[ks.GetName()] = true
		}
	}
	old := r.snap.Load()
	r.snap.Store(&snapshot{tables: old.tables, known: known})
	r.checkReady()
	return nil
}

// apply compiles one keyspace's routing table and swaps it in, returning
// it; an invalid table is logged and the old one kept (nil). Only Run's
// goroutine calls it.
func (r *Router) apply(rt *drplanev1.RoutingTable) *table {
	ks := rt.GetKeyspace()
	old := r.snap.Load()
	if len(r.o.Keyspaces) > 0 && !old.known[ks] {
		return nil // not asked for
	}
	t, err := compile(rt, r.o.DC)
	if err != nil {
		r.m.updates.WithLabelValues(ks, "rejected").Inc()
		r.log.Error().Err(err).Str("keyspace", ks).Int64("map_revision", rt.GetMapRevision()).
			Msg("rejected routing table; keeping the previous one")
		return nil
	}
	prev := old.tables[ks]
	tables := maps.Clone(old.tables)
	tables[ks] = t
	known := old.known
	if len(r.o.Keyspaces) == 0 && known != nil && !known[ks] {
		known = maps.Clone(known)
		known[ks] = true
	}
	r.snap.Store(&snapshot{tables: tables, known: known})
	r.m.updates.WithLabelValues(ks, "applied").Inc()
	r.m.revision.WithLabelValues(ks).Set(float64(t.revision))

	ev := r.log.Debug()
	if prev != nil && t.revision < prev.revision {
		ev = r.log.Warn().Int64("previous_revision", prev.revision)
	}
	ev.Str("keyspace", ks).Int64("map_revision", t.revision).Int("masters", len(t.masters)).Msg("routing table applied")
	r.checkReady()
	r.dbs.sweep(r.liveMasters())
	return t
}

// checkReady closes Ready once every known keyspace has a table.
func (r *Router) checkReady() {
	s := r.snap.Load()
	if s.known == nil {
		return
	}
	for ks := range s.known {
		if s.tables[ks] == nil {
			return
		}
	}
	r.readyMu.Do(func() {
		close(r.ready)
		r.log.Info().Int("keyspaces", len(s.tables)).Msg("router ready")
	})
}

// liveMasters returns the master endpoints the current tables name.
func (r *Router) liveMasters() map[dbKey]bool {
	live := map[dbKey]bool{}
	for _, t := range r.snap.Load().tables {
		for _, m := range t.masters {
			live[keyOf(m)] = true
		}
	}
	return live
}

// sweepLoop closes replaced master handles once their grace period is over.
func (r *Router) sweepLoop(ctx context.Context) {
	every := min(max(r.o.Grace/4, 10*time.Millisecond), maxSweepEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.dbs.sweep(r.liveMasters())
		}
	}
}

func (r *Router) markUp() {
	r.downSince.Store(0)
	r.m.connected.Set(1)
}

func (r *Router) markDown() {
	r.downSince.CompareAndSwap(0, r.o.Now().UnixNano())
	r.m.connected.Set(0)
}

// logStreamError logs why the stream ended; errors that retrying will not
// cure by itself (bad token, missing role, unknown method) are errors, the
// rest warnings.
func (r *Router) logStreamError(err error, wait time.Duration) {
	ev := r.log.Warn()
	if e, ok := apierr.FromError(err); ok && !apierr.Retryable(e.Code) {
		ev = r.log.Error().Str("code", apierr.Reason(e.Code))
	}
	ev.Err(err).Dur("retry_in", wait).Msg("route stream ended; reconnecting")
}

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
