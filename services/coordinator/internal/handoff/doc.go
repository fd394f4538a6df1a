// Package handoff is the safe shard handoff every planned move uses
// (drctl shards move, evacuation, restore), run by the coordinator leader
// one wave of shards at a time:
//
//  1. freeze: the wave's shards become FROZEN (frozen_by the operation) in
//     one fenced write of the shard map; the SDK refuses their writes with
//     the retryable SHARD_FROZEN;
//  2. routers acknowledge: every open route stream (state.RouterStream,
//     recorded by the coordinator serving it) acknowledges the frozen map
//     revision with AckRoutes once its router applied the table and the
//     writes it had admitted to those shards finished; the wait is bounded
//     by RouterGrace, and streams that do not answer are counted as stale;
//  3. barrier: the old owner's collector commits a barrier row
//     (state.Barrier) on its master; its GTID is the old owner's capture
//     watermark for the wave, and its reship ships one barrier event per
//     shard behind everything captured before it;
//  4. catch up: every other DC that is not DOWN — the target above all —
//     has applied each shard up to the barrier (its collector's watermark
//     of the shard reaches the barrier's GTID);
//  5. flip: owner and backup change, the old owner gets a fence at the
//     watermark (shardmap.Fence), and the shards are ACTIVE again, in one
//     fenced etcd transaction with the audit events.
//
// A wave that cannot finish unfreezes its shards at their old owner. What
// the old owner captures for a shard after its fence is divergence:
// refused by its reship and by every collector (see package divergence).
package handoff
