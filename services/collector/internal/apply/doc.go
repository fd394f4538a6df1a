// Package apply is the collector's apply path: it consumes the DC's inbound
// JetStream stream (IN_<dc>) through one durable pull consumer and applies
// each request (drplane.v1.ChangeEvent) to the DC's current master exactly
// once.
//
// A batch of messages becomes one MySQL transaction on a dedicated
// connection with skip_replication=1 (so the DC's reship never ships the
// changes back): per request a dedup row (origin_dc, request_id) in the
// keyspace database's drplane_applied table — a request whose row exists
// was applied before and is skipped — then its rows by primary key (insert
// and update: upsert of the after image; delete: delete by key). The
// messages are acked after the commit, so a crash before the commit
// re-applies and a crash after it skips.
//
// Errors are sorted into transient ones (connection lost, read-only during
// a failover, deadlock, lock wait timeout), retried with backoff while the
// messages stay in hand, and the rest: the batch is then retried one
// request at a time, and a request that still fails (after
// Options.MaxRedeliveries further attempts; an undecodable message at once)
// is dead-lettered to DLQ_<dc>, audited, reported to the ledger and acked,
// so the stream keeps flowing.
//
// Facts about applied and dead-lettered requests go to the ledger stream
// asynchronously; per-source watermarks (last applied request per origin,
// keyspace and shard) and per-origin statistics are written to etcd.
//
// An operator's reapply of a divergence entry that targets this DC is
// carried out here too (replay.go): applied only over rows still as the
// change found them, else the entry goes CONFLICT with nothing written.
package apply
