package ledger

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Stages of drplane_ledger_errors_total.
const (
	stageEnsure   = "ensure_index"
	stageConsumer = "consumer"
	stageFetch    = "fetch"
	stageDecode   = "decode"
	stageRead     = "read"
	stageBulk     = "bulk"
	stageRejected = "rejected"
	stageAck      = "ack"
	stageSearch   = "search"
	stageRecord   = "record"
	stageAudit    = "audit"
)

// Results of drplane_ledger_retries_total.
const (
	resultRepublished = "republished"
	resultFailed      = "failed"
	resultUnanswered  = "unanswered"
	resultNoSequence  = "no_sequence"
)

// metrics are the ledger's Prometheus metrics.
type metrics struct {
	facts    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	indexLag *prometheus.GaugeVec
	pending  *prometheus.GaugeVec
	backlog  *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	rounds   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		facts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_ledger_facts_indexed_total",
			Help: "Ledger facts written into the ledger index, by the DC whose ledger stream carried them and kind.",
		}, []string{"dc", "kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_ledger_errors_total",
			Help: "Failures of the ledger indexer and reconciler by stage.",
		}, []string{"stage"}),
		indexLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_ledger_index_lag_seconds",
			Help: "How long the last fact indexed from a DC's ledger stream had waited in it.",
		}, []string{"dc"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_ledger_facts_pending",
			Help: "Facts in a DC's ledger stream not yet delivered to this coordinator's indexer.",
		}, []string{"dc"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_ledger_backlog",
			Help: "Requests captured in a DC and not applied in every target yet, by state (PENDING, DEAD_LETTERED), as of the last reconciler round.",
		}, []string{"dc", "state"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_ledger_retries_total",
			Help: "Requests the reconciler asked its DC's reship to republish, by result (republished, failed, unanswered, no_sequence).",
		}, []string{"result"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_ledger_reconcile_rounds_total",
			Help: "Reconciler rounds run.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.facts, m.errors, m.indexLag, m.pending, m.backlog, m.retries, m.rounds)
	}
	return m
}
