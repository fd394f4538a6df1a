// Package evac runs planned moves of many shards as crash-safe operations:
// evacuating a DC (every shard it owns handed to its backup, or to a
// chosen DC), restoring one (ACTIVE again and, with move_home, its home
// shards handed back), and a single safe shard move.
//
// An operation is planned when it is asked for (PlanEvacuate, PlanRestore:
// each shard's source, target and new backup, cut into waves of at most
// `parallel` shards of one keyspace) and stored PENDING at
// /operations/<id>; an evacuation or restore also takes its DC's lock
// (/oplocks/<dc>), so only one runs per DC. The coordinator leader's
// Runner runs unfinished operations one at a time, oldest first: it sets
// the DC's state (an evacuation DRAINING, a restore ACTIVE), then runs the
// waves in order through the safe handoff (package handoff: freeze, router
// acknowledgements, barrier, catch-up, one fenced flip), writing the
// record before and after every wave under the leader's fence. A leader
// that dies leaves the record and at most one wave's shards frozen by the
// operation; the next leader runs the same wave again, and the handoff
// engine recognises the shards it already flipped (owner = target, fence
// of this operation), so no shard moves twice.
//
// Cancel (CANCELING, written by any coordinator) is looked at between
// waves: the operation ends CANCELED with every shard moved or still at
// its old owner, unfrozen. A wave that fails unfreezes its shards at their
// old owner and the operation ends FAILED; resume (PENDING again) goes on
// from the first unfinished wave. A finished evacuation sets its DC
// EVACUATED once it owns no shard (shards moved into it meanwhile get
// extra waves). Every step is audited: operation.create, .start, .wave,
// .cancel, .resume, .finish here, handoff.freeze, .flip and .abort per
// shard by the engine, dc.set_state for the DC's state.
package evac
