// Package auditlog is the coordinator's side of the audit log: it indexes
// the events that API handlers, the operations queue and the HA agents put
// in the etcd outbox (pkg/audit) into the audit index of a document store
// (pkg/docstore), serves AuditService.SearchAudit from that index, and audits
// calls refused as UNAUTHENTICATED.
//
// Every coordinator runs an Indexer: it lists the outbox from its
// checkpoint (the etcd revision it has indexed up to), then watches it from
// the next revision; when the watch breaks or its revision was compacted it
// lists again from the checkpoint. Events are written with their event id as
// document id, so indexing twice is harmless, and several coordinators may
// share one Elasticsearch index while each lab coordinator's embedded index
// receives every event. The checkpoint is a document of a small meta index
// (<index>-meta) whose id is the coordinator's id. Outbox entries older than
// the retention are deleted by every indexer (deletes are idempotent); an
// indexer that was down for longer than the retention misses the events
// deleted meanwhile.
//
// Indexed documents keep the event's fields (time as date; actor, action,
// target, outcome and id as keywords; error as text; rto_ms and
// rpo_transactions as longs), the parameters as text values "key=value",
// and a text field "all" holding the words of the actor, action, target,
// parameters and error, split at the punctuation inside them, so that a bare
// word such as "switchover" finds the action "switchover.request".
package auditlog
