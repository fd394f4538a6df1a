package ship

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Publish results of drplane_reship_published_total.
const (
	resultStored    = "stored"
	resultDuplicate = "duplicate"
)

// Metrics are the shipping side's Prometheus metrics.
type Metrics struct {
	published   *prometheus.CounterVec
	failed      prometheus.Counter
	reordered   prometheus.Counter
	latency     prometheus.Histogram
	inflight    prometheus.Gauge
	ledger      *prometheus.CounterVec
	republished *prometheus.CounterVec
	cpWrites    *prometheus.CounterVec
	// oldest is the Unix nanoseconds at which the oldest transaction not
	// yet covered by the checkpoint was captured (0: none pending).
	oldest atomic.Int64
}

// NewMetrics registers the metrics on reg; now is the clock of the
// checkpoint age.
func NewMetrics(reg prometheus.Registerer, now func() time.Time) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_published_total",
			Help: "ChangeEvents acknowledged by the outbound stream, by result (stored, duplicate: already stored under its Nats-Msg-Id).",
		}, []string{"result"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_publish_failures_total",
			Help: "Publishes to the outbound stream that failed (the capture restarts from the checkpoint).",
		}),
		reordered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_reship_publish_reordered_total",
			Help: "Events stored after an earlier event of the same pipeline failed: they precede its republication in the stream.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drplane_reship_publish_latency_seconds",
			Help:    "Time from publishing a ChangeEvent to its PubAck.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_reship_publish_inflight",
			Help: "ChangeEvents published and not acknowledged yet.",
		}),
		ledger: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_ledger_updates_total",
			Help: "Ledger updates by result (published, dropped: buffer full, failed).",
		}, []string{"result"}),
		republished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_republished_total",
			Help: "Outbound messages republished on request of the reconciler, by result (ok, failed).",
		}, []string{"result"}),
		cpWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_reship_checkpoint_writes_total",
			Help: "Checkpoint writes to etcd by result (ok, failed).",
		}, []string{"result"}),
	}
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drplane_reship_checkpoint_age_seconds",
		Help: "How long the oldest captured transaction not yet covered by the checkpoint has waited (0: the checkpoint covers everything captured).",
	}, func() float64 {
		n := m.oldest.Load()
		if n == 0 {
			return 0
		}
		return now().Sub(time.Unix(0, n)).Seconds()
	})
	reg.MustRegister(m.published, m.failed, m.reordered, m.latency, m.inflight, m.ledger, m.republished, m.cpWrites, age)
	return m
}
