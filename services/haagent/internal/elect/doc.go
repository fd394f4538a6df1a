// Package elect elects the active HA agent of a DC and keeps a leader that
// lost etcd from acting on stale authority.
//
// Every agent process of a DC runs an Elector. It grants itself a lease and
// campaigns with a concurrency.Election on the prefix
// <root>/agents/<dc>/election; the winner's candidacy key and its create
// revision are the fencing token (state.Fence) that guards every write the
// leader makes. The leader's work runs in the lead callback under a context
// that is cancelled the moment the tenure ends.
//
// Self-fencing watchdog. The elector keeps its lease alive itself and stamps
// each renewal with the injected clock. While leading, once the lease has
// gone TTL − FenceBefore without a renewal, it decides within FenceBefore/2:
//
//   - etcd answers "no leader" (the member is reachable but the cluster lost
//     its quorum): nobody can be elected or write a master record, and when
//     the quorum returns the new etcd leader renews every lease. The agent
//     keeps leading as a single-point primary (SinglePointPrimary, metric
//     drplane_haagent_single_point_primary) and keeps watching — for at
//     most Options.SinglePointLimit after the last renewal, then only while
//     a majority of the etcd members answer without a leader (no quorum
//     anywhere), else SelfFence (docs/adr/0011);
//   - etcd does not answer: others may have a quorum and elect a standby as
//     soon as the lease expires, so SelfFence is called while the lease still
//     stands, the tenure ends, the lease is abandoned, and the elector
//     campaigns again with a new lease once etcd answers;
//   - the lease or candidacy key turned out to be gone: SelfFence too.
//
// The probe is a transaction holding a serializable get under
// clientv3.WithRequireLeader: the client retries a plain Get that meets "no
// leader" until its context ends, which hides the answer, while a
// transaction is not retried and a serializable read is answered by the
// member itself. A probe that reaches a member with a leader also renews the
// lease (KeepAliveOnce), so a renewal that was merely late ends the alarm.
//
// The verdict is the view of the members the client reaches: a member cut
// off together with the agent from a majority that still has a quorum also
// answers "no leader"; hence the limit. Give the agents' clients every etcd
// endpoint.
//
// Shutdown. When Run's context ends the elector waits for lead to return,
// resigns and revokes its lease, so a standby takes over within
// milliseconds. Cancelling the context with cause ErrAbandon skips both, as
// a crash would: the standby then waits for the lease to expire.
package elect
