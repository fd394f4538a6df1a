// Package ops is the coordinator's crash-safe queue of mutations.
//
// A mutating API call on any coordinator validates its request, writes an
// operation record PENDING under <root>/ops/<id> and waits (bounded) until
// the global leader finished it. The leader (package leader) follows the
// queue and applies PENDING operations oldest first (by etcd create
// revision), each in ONE etcd transaction that compares
//
//   - the leader's fencing token (its election key still exists with the
//     create revision it was elected at),
//   - the operation record's mod revision (it is still the PENDING version
//     the leader read), and
//   - the mod revision of every object the change depends on (the shard
//     map, the topology, the kill switch),
//
// and writes the changed object, the operation record DONE and its audit
// event (pkg/audit outbox) together. A request the current state rejects
// (a map that fails validation, an unknown DC) is written FAILED with its
// API error code, fenced the same way, and changes nothing else. So an
// operation is applied at most once and never half, a deposed leader
// changes nothing, and a new leader applies whatever its predecessor left
// PENDING.
//
// Finished records are the history of mutations; the leader deletes those
// finished more than Options.Retention (24 h by default) ago.
//
// The kinds and their parameters:
//
//	move_shard        keyspace, shard, owner, backup (empty: keep the backup,
//	                  or the old owner when the backup becomes the owner)
//	set_shard_state   keyspace, shard, shard_state (ACTIVE, FROZEN, MOVING)
//	set_dc_state      dc, dc_state (ACTIVE, DRAINING, EVACUATED, DOWN)
//	set_killswitch    kill_switch (scope, reason, set_by, set_at)
//	clear_killswitch  dc, cluster (the scope)
//	resolve_divergence  divergence_id, action (discard, reapply), reason:
//	                  the entry (pkg/divergence) goes DISCARDED, or REPLAYING
//	                  with the shard's current owner as the reapply's target;
//	                  compared on the entry's mod revision
package ops
