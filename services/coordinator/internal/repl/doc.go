// Package repl serves the coordinator's ReplicationService: the replication
// status of every DC pair (from the collectors' statistics and watermarks in
// etcd, plus the ledger backlog), the ledger record of one request, and each
// DC's dead letters, which an operator can retry.
//
// Dead letters live in DLQ_<dc> in the DC's own JetStream domain; any
// coordinator reaches them over its NATS connection. A retry publishes the
// dead letter's payload to drplane.replay.<dc>.<origin>, which the DC's
// inbound stream captures, with a Nats-Msg-Id derived from the dead letter
// (putting the same one back twice within the dedup window stores it once),
// deletes it from the dead-letter stream once stored, reports a RETRIED fact
// to the DC's ledger stream and audits the call (replication.dlq_retry).
package repl
