// Package failover carries out the HA agent's changes to MySQL instances:
// fencing, promotion, repointing and rejoining replicas, and the two
// procedures built from them — the automatic failover of a dead master and
// the operator's graceful switchover — each kept as a durable record in
// etcd with its timeline, RTO and RPO, and audited.
//
// Every procedure writes its record under the agent's election fence before
// it changes any instance, and writes the master record under the same
// fence before the new master becomes writable: an agent that lost its
// leadership (or etcd quorum) changes nothing, and an agent that dies half
// way leaves a state the next agent's analysis recognizes and finishes.
package failover
