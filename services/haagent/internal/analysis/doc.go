// Package analysis is the HA agent's failure analysis: pure functions from
// one snapshot of a cluster (the master record and the latest observation of
// every instance) to the problems it has, each with the recovery the agent
// should run. It talks to nothing; the agent loop feeds it and the failover
// package acts on its answers.
//
// The failure model is data: Problems returns one table of analysis codes,
// each with a description, a priority, a recovery and a match function, in
// priority order. Analyze runs every row and then applies the cross-row
// rules:
//
//   - a quarantined instance only ever yields the Quarantined alert;
//   - an instance gets at most one analysis per action (FENCE, REPOINT, …):
//     the higher row wins;
//   - an instance with errant GTIDs is quarantined, never repointed,
//     rejoined or restarted;
//   - while a FAILOVER code matches, per-replica REPOINT, REJOIN and
//     RESTART_REPLICATION analyses are left out: they follow the failover.
//
// Detection is holistic: an unreachable master is declared dead only when
// every reachable replica of it has lost it too. One replica that still
// receives from it (UnreachableMasterReplicasOK) means the agent's own view is
// the odd one out, and nothing is done; no replica to ask
// (UnreachableMasterNoEvidence) means nothing can be told, and nothing is done
// either.
//
// GTID comparisons work on MariaDB positions (one GTID per domain). Errant is
// the strict per-domain comparison. Where a position is compared with the
// master's last observation, the two observations are not taken at the same
// instant, so a replica of the master may legitimately be ahead of it: GTIDs
// that carry the server id of the master's own last GTID in that domain, or
// the master's own server id, are then taken as received from the master, not
// as errant; and the agent confirms an errant instance with a read of the
// instance followed by a read of the master before it quarantines it. An instance that does
// not replicate from the master gets no such allowance (an old master that
// returns with un-replicated transactions is errant).
//
// Candidates ranks the replicas that may be promoted, most advanced received
// position first, and says why every other instance was left out; Missing
// counts the transactions an old master had that the new one lacks (the RPO).
package analysis
