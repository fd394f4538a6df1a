// Package leader elects the one global leader among all coordinators.
//
// Every coordinator serves reads; only the leader applies mutations (the
// operations queue, package ops). The election is a
// go.etcd.io/etcd/client/v3/concurrency Election under
// <root>/coordinators/election on a session of its own (not the process's
// registration lease), so a coordinator can lose and regain leadership
// without re-registering. The leader's fencing token is its election key and
// that key's create revision (state.Fence); every write the leader makes
// compares it in the same transaction, so a deposed leader that still
// believes it leads cannot change anything.
//
// Leader.Run campaigns, holds the leadership until its session ends, its
// election key disappears (for example when the session's lease is revoked)
// or its context ends, and then campaigns again; on shutdown it resigns, so
// another coordinator takes over at once instead of after the session TTL.
package leader
