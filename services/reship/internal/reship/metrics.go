package reship

import "github.com/prometheus/client_golang/prometheus"

// metrics are the capture side's Prometheus metrics (the shipping side's
// are in package ship).
type metrics struct {
	txns        prometheus.Counter
	rows        prometheus.Counter
	events      prometheus.Counter
	skippedTxns *prometheus.CounterVec
	skippedRows *prometheus.CounterVec
	diverged    prometheus.Counter
	lag         prometheus.Histogram
	lastCommit  prometheus.Gauge
	restarts    *prometheus.CounterVec
	// rewinds and lostRequests count lossy failovers of the DC's master.
	rewinds      prometheus.Counter
	lostRequests prometheus.Counter
	// durableWait is the hold of each transaction until it was durable in
	// the DC; held is 1 while a transaction waits; gateErrors counts polls
	// of an instance that failed.
	durableWait prometheus.Histogram
	held        prometheus.Gauge
	gateErrors  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		txns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_transactions_total",
			Help: "Committed transactions read from the binlog (shipped or skipped).",
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_rows_total",
			Help: "Changed rows put into ChangeEvents.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_events_total",
			Help: "ChangeEvents built (one per transaction and shard).",
		}),
		skippedTxns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_skipped_transactions_total",
			Help: "Transactions that shipped nothing, by reason: loop (applied by a collector), ddl, unmapped (no row of any keyspace).",
		}, []string{"reason"}),
		skippedRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_skipped_rows_total",
			Help: "Rows not shipped, by reason: unmapped (table outside every keyspace), bad_key (shard key missing, NULL or outside the map's key space).",
		}, []string{"reason"}),
		diverged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_diverged_total",
			Help: "Changes not shipped because this DC had handed their shard off before capturing them (divergence).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drplane_reship_capture_lag_seconds",
			Help:    "Capture time minus commit time of each transaction (the binlog's commit time has whole-second resolution).",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 300, 1800},
		}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_reship_last_commit_timestamp_seconds",
			Help: "Commit time (Unix seconds) of the last transaction captured; time() minus it is the capture lag while writes flow.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_syncer_restarts_total",
			Help: "Binlog capture restarts from the checkpoint, by reason: master_change, rewind, stream_error, publish_error, error.",
		}, []string{"reason"}),
		rewinds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_rewinds_total",
			Help: "Lossy failovers: the new master lacked transactions already shipped, so capture moved back to its position.",
		}),
		lostRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_rewind_lost_requests_total",
			Help: "Requests shipped to the other DCs that a lossy failover lost in this DC (named on the failover record).",
		}),
		durableWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drplane_reship_durable_wait_seconds",
			Help:    "How long each transaction read from the binlog was held until an in-DC replica had received it (or the master acknowledged commits without semi-sync).",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 5, 30},
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_reship_durable_waiting",
			Help: "1 while a transaction read from the binlog waits to be durable in the DC (no replica received it yet), else 0.",
		}),
		gateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_durable_poll_errors_total",
			Help: "Polls of an instance's replication position (or the master's semi-sync state) that failed, by address.",
		}, []string{"addr"}),
	}
	reg.MustRegister(m.txns, m.rows, m.events, m.skippedTxns, m.skippedRows, m.diverged, m.lag, m.lastCommit, m.restarts,
		m.rewinds, m.lostRequests, m.durableWait, m.held, m.gateErrors)
	return m
}
