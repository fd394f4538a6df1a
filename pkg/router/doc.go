// Package router is the client SDK of drplane: it tells an application where
// a key lives (shard, owner DC, the owner DC's master) and hands it the
// *sql.DB to write the key through when, and only when, this DC may take
// the write.
//
// # Where routes come from
//
// A Router works against the coordinator's API, not against etcd.
// Applications get no etcd credentials (etcd holds the fencing tokens, the
// master records and the kill switches; a bug in an application must not be
// able to write there), only an API token with the viewer role, and the
// coordinator's answers pass its validation, authentication and audit like
// everyone else's. Every coordinator serves the stream, so a process can be
// pointed at the one in its own DC.
//
// Run keeps ONE ShardService.WatchRoutes stream per process open. The
// coordinator first sends a full RoutingTable of each watched keyspace, then
// a new full table of a keyspace whenever its shard map or one of its
// owners' masters changes. The router compiles each table (with pkg/shardmap)
// into an immutable lookup table and swaps it in with one atomic pointer
// store: a change of routes and masters applies to a keyspace as a whole,
// and a reader sees either the old table or the new one. A table that is not
// a valid shard map is logged and rejected (drplane_router_table_updates_total
// {result="rejected"}); the keyspace keeps its previous table.
//
// When the stream ends (coordinator restart, network, a deploy), Run opens a
// new one after a backoff (Options.MinBackoff doubling to MaxBackoff, with
// jitter, reset once a stream delivered), and the new stream's snapshots
// catch the router up on everything it missed. Meanwhile lookups keep
// answering from the last tables. Options.MaxStale optionally makes WriteDB
// refuse local writes (ErrStale) once the stream has been down too long;
// it is off by default, because an outage of the coordinators alone should
// not stop writes. Set it where a write landing in a DC that lost the shard
// while the router could not hear about it is worse than refusing writes.
// Half-open connections are found by gRPC keepalive, which is the
// connection's setting (grpc.WithKeepaliveParams).
//
// # Lookups and writes
//
// Route reads the current table through the atomic pointer and a binary
// search, with no lock, no call and no allocation; see BenchmarkRoute for
// the figures. WriteDB adds the write rules:
//
//   - FROZEN shard → ErrShardFrozen (API code SHARD_FROZEN, retryable): an
//     owner change is waiting for replication to catch up;
//   - another DC owns the shard → *NotOwner with the owner and its master,
//     so the caller can forward the write (not retryable here);
//   - this DC owns it (ACTIVE or MOVING) but no master is known →
//     ErrNoMaster (retryable: a failover is under way);
//   - otherwise the *sql.DB of the owner master, opened once per
//     (dc, cluster, addr) with Options.DB and cached. A master change in the
//     table switches the handle; the replaced one is closed Options.Grace
//     later.
//
// IsRetryable tells retryable failures apart; the errors are *apierr.Error
// values with catalog codes, so an application server that returns them
// through the apierr interceptors sends its own clients the same codes.
//
// # Readiness
//
// Ready is closed once every watched keyspace has a table: the keyspaces of
// Options.Keyspaces or, when that is empty, those TopologyService names (the
// router asks each time it opens the stream). Before that, Route and WriteDB
// fail with ErrNotReady; a keyspace the router does not watch fails with
// ErrUnknownKeyspace.
//
// # Metrics
//
// With Options.Registry set: drplane_router_table_revision{keyspace},
// drplane_router_table_updates_total{keyspace,result},
// drplane_router_stream_reconnects_total, drplane_router_stream_up and
// drplane_router_lookups_total{call,outcome}.
//
// Package router/routertest serves routing tables over a real gRPC
// ShardService for tests of code that uses the router.
package router
