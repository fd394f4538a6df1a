package auditlog

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stages of drplane_coordinator_audit_index_errors_total.
const (
	stageEnsure     = "ensure_index"
	stageList       = "list"
	stageWatch      = "watch"
	stageDecode     = "decode"
	stageBulk       = "bulk"
	stageRejected   = "rejected"
	stageCheckpoint = "checkpoint"
	stageRetention  = "retention"
)

// metrics are the indexer's Prometheus metrics.
type metrics struct {
	indexed    prometheus.Counter
	errors     *prometheus.CounterVec
	deleted    prometheus.Counter
	checkpoint prometheus.Gauge
	// newest is the Unix nanoseconds of the newest event indexed (0: none).
	newest atomic.Int64
}

func newMetrics(reg prometheus.Registerer, now func() time.Time) *metrics {
	m := &metrics{
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_coordinator_audit_indexed_total",
			Help: "Audit events written into the audit index (re-indexed ones count again).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_coordinator_audit_index_errors_total",
			Help: "Failures of the audit indexer by stage (list, watch, decode, bulk, rejected, checkpoint, retention, ensure_index).",
		}, []string{"stage"}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_coordinator_audit_outbox_deleted_total",
			Help: "Audit events deleted from the etcd outbox after the retention.",
		}),
		checkpoint: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_coordinator_audit_checkpoint_revision",
			Help: "The etcd revision the audit indexer has indexed up to.",
		}),
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drplane_coordinator_audit_index_lag_seconds",
		Help: "Now minus the time of the newest audit event indexed (0 before the first); grows while no events arrive.",
	}, func() float64 {
		n := m.newest.Load()
		if n == 0 {
			return 0
		}
		return now().Sub(time.Unix(0, n)).Seconds()
	})
	if reg != nil {
		reg.MustRegister(m.indexed, m.errors, m.deleted, m.checkpoint, lag)
	}
	return m
}

// sawEvent records the time of an indexed event.
func (m *metrics) sawEvent(t time.Time) {
	n := t.UnixNano()
	for {
		cur := m.newest.Load()
		if n <= cur || m.newest.CompareAndSwap(cur, n) {
			return
		}
	}
}
