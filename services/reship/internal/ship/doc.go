// Package ship publishes captured ChangeEvents to the DC's outbound
// JetStream stream and keeps reship's checkpoint.
//
// A Pipeline publishes asynchronously, with at most Window messages in
// flight, each to drplane.out.<dc>.<keyspace>.<shard> with Nats-Msg-Id
// "<origin-dc>:<request-id>" (the stream drops a repeat within its dedup
// window). PubAcks are taken in publishing order, and the Checkpointer's
// position moves past a transaction only once every event before and in it
// was acknowledged. After the first failed publish a pipeline takes no more
// events and stops moving the checkpoint; its owner drains it and starts a
// new capture from the checkpoint, so events after the failure are
// published again (and dropped by the stream as duplicates when they had
// been stored). Publishing on a connection without a reconnect buffer keeps
// a later event from being stored before an earlier one that was lost with
// the connection; a later event stored anyway is counted as reordered.
//
// The Checkpointer holds the acknowledged position in memory and writes it
// to etcd (<root>/reship/<dc>/<cluster>) at most every interval and on
// Flush.
//
// For every acknowledged event a LedgerUpdate CAPTURED (targets: the other
// DCs; outbound_seq: the PubAck's sequence) goes to the Ledger, which
// publishes it asynchronously to drplane.ledger.<dc>.captured on the
// LEDGER_<dc> stream. The ledger never holds up capture: when its buffer is
// full, updates are dropped and counted, never events.
//
// A Republisher answers requests on drplane.reship.<dc>.republish: it reads
// the given sequences from OUT_<dc> and publishes each message again with
// Nats-Msg-Id "<origin-dc>:<request-id>:retry-<unix-nano>", so the stream
// stores it again; the collectors' dedup rows make a second delivery
// harmless.
package ship
