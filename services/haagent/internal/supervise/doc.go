// Package supervise is the active HA agent's loop: every interval it
// observes the DC's instances, reads the master records, kill switches,
// quarantines and switchover intents in one etcd round trip, runs the
// failure analysis per cluster, lets package decide rule on it (kill
// switches, the failover budget, a retry backoff) and carries out the plan
// — automatic failover, fencing, unfencing, repointing, rejoining and
// quarantining — and the operators' switchovers. It also fences the DC's masters when the
// elector says the agent is cut off from etcd.
package supervise
