package router

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Lookup outcomes, the "outcome" label of drplane_router_lookups_total.
const (
	outcomeRouted          = "routed"
	outcomeNotReady        = "not_ready"
	outcomeUnknownKeyspace = "unknown_keyspace"
	outcomeBadKey          = "bad_key"
	outcomeLocal           = "local"
	outcomeNotOwner        = "not_owner"
	outcomeFrozen          = "frozen"
	outcomeNoMaster        = "no_master"
	outcomeStale           = "stale"
	outcomeError           = "error"
)

type metrics struct {
	revision   *prometheus.GaugeVec
	updates    *prometheus.CounterVec
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	lookups    *prometheus.CounterVec
	// route and write are the lookups children by outcome.
	route map[string]prometheus.Counter
	write map[string]prometheus.Counter
	// routed is route[outcomeRouted], kept apart for the hot path.
	routed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_router_table_revision", Help: "Map revision of the routing table in use, per keyspace.",
		}, []string{"keyspace"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_router_table_updates_total", Help: "Routing tables received, per keyspace, applied or rejected.",
		}, []string{"keyspace", "result"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_router_stream_reconnects_total", Help: "WatchRoutes streams reopened after one ended.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_router_stream_up", Help: "1 while the WatchRoutes stream delivers, 0 while it is down.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_router_lookups_total", Help: "Route and WriteDB calls by outcome.",
		}, []string{"call", "outcome"}),
		route: map[string]prometheus.Counter{},
		write: map[string]prometheus.Counter{},
	}
	// Every outcome's counter exists (at 0) from the start, and the hot
	// path increments a pre-resolved child.
	for _, o := range []string{outcomeRouted, outcomeNotReady, outcomeUnknownKeyspace, outcomeBadKey} {
		m.route[o] = m.lookups.WithLabelValues("route", o)
	}
	for _, o := range []string{outcomeLocal, outcomeNotOwner, outcomeFrozen, outcomeNoMaster, outcomeStale,
		outcomeNotReady, outcomeUnknownKeyspace, outcomeBadKey, outcomeError} {
		m.write[o] = m.lookups.WithLabelValues("write", o)
	}
	m.routed = m.route[outcomeRouted]
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.revision, m.updates, m.reconnects, m.connected, m.lookups} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("%w: metrics: %w", ErrOptions, err)
		}
	}
	return m, nil
}

// missOutcome names the outcome of a lookup that failed with err.
func missOutcome(err error) string {
	switch {
	case errors.Is(err, ErrNotReady):
		return outcomeNotReady
	case errors.Is(err, ErrUnknownKeyspace):
		return outcomeUnknownKeyspace
	}
	return outcomeBadKey
}
