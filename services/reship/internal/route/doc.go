// Package route maps captured rows to keyspaces and shards and builds the
// ChangeEvents reship ships.
//
// A Router follows the topology in etcd (which tables form which keyspace
// of the captured cluster, and which DCs exist) and the shard map of every
// such keyspace (pkg/shardmap). Split cuts one captured transaction into one
// ChangeEvent per (keyspace, shard) it touched, in order of first
// appearance. A row goes to the shard of its shard-key column's value, read
// from the after image (the before image for a DELETE; a row whose UPDATE
// moves it to another shard goes with its new shard). The key is turned into
// bytes the way clients turn it: the decimal text of an integer, the UTF-8
// bytes of a string, the bytes of a binary value; the shard map's function
// (HASH or RANGE) then picks the shard, exactly as pkg/shardmap documents.
//
// A request is one transaction's rows in one shard. Its id is
// "<gtid>/<shard>" (ADR 0005). A transaction that touches more than one
// keyspace could produce the same shard number twice, so all of its requests
// are named "<gtid>/<keyspace>/<shard>" instead: still the same for whoever
// captures the transaction and however often.
//
// Split waits while a keyspace's shard map is not loaded yet: rows are never
// dropped for want of a map. Rows whose shard key is missing, NULL or not
// in the map's key space cannot be routed; they are counted and reported,
// not shipped.
package route
