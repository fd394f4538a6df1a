// Package supervise is the active HA agent's loop: every interval it
// observes the DC's instances, reads the master records, kill switches,
// quarantines and switchover intents in one etcd round trip, runs the
// failure analysis per cluster and carries out the recoveries it calls for
// — automatic failover (subject to kill switches, anti-flap and a retry
// backoff), fencing, unfencing, repointing, rejoining and quarantining —
// and the operators' switchovers. It also fences the DC's masters when the
// elector says the agent is cut off from etcd.
package supervise
