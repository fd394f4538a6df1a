// Package shardmap is the shard map of a keyspace: which shard a key belongs
// to, which DC owns that shard (takes its writes), which DC is its backup and
// whether the shard is ACTIVE, FROZEN or MOVING. It builds the default map of
// a keyspace from the topology, validates maps, compiles them into an
// immutable lookup table that routes a key without allocating, applies
// mutations as pure functions, and stores maps in etcd under compare-and-swap
// and the leader's fencing token.
//
// # Keys and points
//
// Every key is first turned into a 64-bit unsigned point; shards own
// half-open ranges [Lo, Hi) of points. The rule that turns a key into a point
// is the map's Function, and it is part of the wire contract: clients in any
// language must compute exactly the same point.
//
// HASH: the point is XXH64 of the key's bytes with seed 0 (the 64-bit
// xxHash of the xxHash specification, https://github.com/Cyan4973/xxHash,
// file doc/xxhash_spec.md). A key given as text is hashed as its UTF-8
// bytes, with no terminator, no normalisation and no trimming; the decimal
// user id 42 is the two bytes "42". Reference values, pinned by this
// package's tests so the hash can never change silently:
//
//	XXH64("")       = 0xef46db3751d8e999
//	XXH64("abc")    = 0x44bc2cf5ad770999
//	XXH64("42")     = 0x6de6f5d076d742b9
//	XXH64("user-1") = 0xa173746b114c6be8
//
// RANGE: the point is the value of the key read as an unsigned decimal
// integer: one or more ASCII digits '0'-'9' and nothing else (no sign, no
// spaces, no '+', no thousands separators), whose value is at most
// 18446744073709551615 (2^64-1). Leading zeros are allowed and ignored, so
// "007" and "7" are the same point. Any other key is not in a RANGE map's key
// space and its lookup fails with ErrBadKey.
//
// # Ranges
//
// Shard bounds are unsigned 64-bit integers. Lo is inclusive and Hi
// exclusive; Hi = 0 is the one exception and means 2^64, the end of the
// space, so the shard holding the largest points has Hi = 0 and a one-shard
// map is [0, 0). A valid map's ranges cover every point exactly once: sorted
// by Lo, the first starts at 0, each one's Hi is the next one's Lo, and the
// last one's Hi is 0. A point p belongs to the shard with the largest Lo that
// is <= p.
//
// The default map of N shards (New) splits the space into N equal ranges:
// shard i owns [floor(i*2^64/N), floor((i+1)*2^64/N)), computed in 128-bit
// integer arithmetic, with the last Hi written as 0. When N is a power of two
// 2^k, this means shard i holds exactly the points whose top k bits are i, so
// a HASH client can compute the shard of a key as XXH64(key) >> (64-k); in
// the default 64-shard map the key "42" is in shard 0x6de6f5d076d742b9 >> 58
// = 27.
//
// New assigns owners round-robin over the ACTIVE DCs and picks each shard's
// backup in another city when one has an ACTIVE DC; see New.
//
// # Encoding
//
// A Map is stored in etcd as JSON at <root>/shardmaps/<keyspace>:
//
//	{"keyspace":"orders","function":"HASH","shards":[
//	  {"id":0,"lo":"0","hi":"4611686018427387904","owner":"dc-a1","backup":"dc-b1","state":"ACTIVE","revision":7},
//	  ...]}
//
// lo and hi are decimal strings, as in the proto3 JSON mapping of uint64, so
// that readers whose numbers are IEEE doubles (JavaScript) do not round them.
// The map's own revision is not stored: it is the etcd mod revision of the
// key. A shard's revision is the mod revision of the write that last changed
// its owner, backup or state; a mutation resets it to 0 ("changed, not yet
// stored") and Load and Watch replace 0 with the revision of the write that
// stored it.
//
// A shard takes about 140 bytes of JSON, so etcd's default request limit
// (1.5 MiB, --max-request-bytes) holds maps of up to about 11,000 shards; a
// larger map needs a larger limit.
package shardmap
