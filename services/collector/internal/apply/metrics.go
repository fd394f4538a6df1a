package apply

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus series.
type metrics struct {
	lag          *prometheus.HistogramVec
	applied      *prometheus.CounterVec
	rows         *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	diverged     *prometheus.CounterVec
	staleRows    *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	redeliveries prometheus.Counter
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	retries      *prometheus.CounterVec
	ledgerDrops  prometheus.Counter
	ledgerErrors prometheus.Counter
	auditErrors  prometheus.Counter
	pending      prometheus.Gauge
	replays      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drplane_collector_lag_seconds",
			Help:    "Capture-to-apply lag: time from the commit in the origin DC to the commit of the apply here.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"origin"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_applied_total",
			Help: "Requests applied (their rate is the events/s per origin).",
		}, []string{"origin"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_rows_total",
			Help: "Row changes applied.",
		}, []string{"origin"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_duplicates_total",
			Help: "Requests received again after they had been applied, skipped by the dedup row.",
		}, []string{"origin"}),
		diverged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_diverged_total",
			Help: "Changes refused because their origin had handed the shard off before capturing them (divergence).",
		}, []string{"origin"}),
		staleRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_stale_rows_total",
			Help: "Row changes skipped by the ordering guard: older than a change of the same origin already applied to the row (a late retry or republish).",
		}, []string{"origin"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_dead_letters_total",
			Help: "Requests dead-lettered to DLQ_<dc>.",
		}, []string{"origin"}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_collector_redeliveries_total",
			Help: "Messages JetStream delivered more than once.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drplane_collector_batch_size",
			Help:    "Messages per applied batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drplane_collector_batch_seconds",
			Help:    "Time to apply one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_retries_total",
			Help: "Retries: kind=transient (a batch retried as is), isolate (a batch retried one request at a time), gap (the consumer reset to redeliver a gap in order).",
		}, []string{"kind"}),
		ledgerDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_collector_ledger_dropped_total",
			Help: "Ledger facts dropped because the publish buffer was full.",
		}),
		ledgerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_collector_ledger_errors_total",
			Help: "Ledger facts whose publish failed.",
		}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_collector_audit_errors_total",
			Help: "Dead-letter audit events that could not be written to the etcd outbox.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_collector_pending",
			Help: "Messages of the inbound stream not yet delivered to the collector.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_collector_replays_total",
			Help: "Operators' reapplies of divergence entries this collector finished: state=replayed (applied, or present already) or conflict (a row at the owner was not as the change found it; nothing written).",
		}, []string{"state"}),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.applied, m.rows, m.duplicates, m.diverged, m.staleRows, m.deadLetters, m.redeliveries, m.batchSize,
			m.batchSeconds, m.retries, m.ledgerDrops, m.ledgerErrors, m.auditErrors, m.pending,
			m.replays)
	}
	return m
}
