// Package ledger is the coordinator's request ledger: one document per
// replicated request in the ledger index of the coordinator's document
// store (doc id "<origin-dc>:<request-id>"), built from the facts reship
// and the collectors publish to each DC's LEDGER_<dc> stream, and a
// reconciler that republishes the requests of its own DC that stay
// unapplied.
//
// Indexing. Every coordinator follows the ledger stream of every DC in the
// topology through a durable pull consumer named after itself
// ("ledger_<id>"), in that DC's JetStream domain (named after the DC)
// reached over its own DC's NATS. A DC that is down is retried with
// backoff; its consumer resumes where it stopped. Facts are folded into
// their documents by read-modify-write, a batch at a time, and acked after
// the write, so a crash re-indexes a batch, which is harmless: every fact
// is idempotent and the result does not depend on the order the facts
// arrive in (an apply reported before the capture, say). A document keeps
// the facts — earliest capture, union of the targets, lowest outbound
// sequence, earliest apply per DC, latest dead letter per DC, retries by DC
// and time — and derives from them its state (APPLIED: every target
// applied it; DEAD_LETTERED: a DC dead-lettered it and neither applied it
// nor had it put back since; PENDING otherwise, also while the capture is
// not known), the pending, applied and dead-lettered DCs, the attempts and
// when it was last sent. Documents are written as merges, so that several
// coordinators may share one Elasticsearch index: their per-DC facts never
// overwrite each other, and derived fields another writer left stale are
// recomputed by the next write, by Lookup and by the reconciler.
//
// Reconciling. Every ReconcileEvery, the reconciler of each coordinator
// looks for requests captured in its own DC whose last send (capture or
// retry) is older than RetryAfter, that some target has still to apply
// (dead-lettered targets are left to the operator), and that were retried
// fewer than MaxAttempts times; at most MaxPerRound per round, oldest
// first. It asks the DC's reship to republish their outbound sequences
// (a NATS request on drplane.reship.<dc>.republish), records each attempt
// in its index at once and as a RETRIED fact on its DC's ledger stream for
// the other coordinators, and writes one audit event per round
// (replication.retry). A reship that does not answer costs nothing but a
// warning: the next round asks again.
//
// The ledger keeps every document; with Elasticsearch, an index lifecycle
// policy bounds it.
package ledger
