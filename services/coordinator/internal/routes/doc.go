// Package routes keeps every coordinator's in-memory routing state: the
// topology, each keyspace's shard map compiled into a lookup table
// (shardmap.Table), and the master records of the keyspaces' clusters. The
// Cache follows etcd with watches (the topology key, the master records,
// and one shardmap.Watch per keyspace), so reads (Route, WatchRoutes) are
// served from memory by every coordinator, leader or not.
//
// Entries are immutable: a change builds a new Entry for the keyspaces it
// affects (a shard map, or a master of the keyspace's cluster) and leaves the
// others as they were, so a subscriber can tell what changed by comparing
// pointers. Subscribers are told that something changed, not what: a slow
// one reads the latest state when it gets to it, never a backlog.
package routes
