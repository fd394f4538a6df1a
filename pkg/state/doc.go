// Package state is drplane's etcd keyspace: the key layout and typed
// read/write/watch helpers for the topology, registered services, observed
// instance status and master records. Every write that decides who is
// master is guarded by a fencing token (an election key's create revision).
//
// Layout under the root prefix (default "/drplane"):
//
//	/topology                              topology.Topology (JSON)
//	/services/<dc>/<service>/<id>          ServiceRecord, on the process's lease
//	/status/<dc>/<cluster>/<instance>      InstanceStatus, on the observer's lease
//	/masters/<dc>/<cluster>                MasterRecord, fenced
//	/elections/<name>                      concurrency.Election prefixes
//	/watermarks/<dc>/<origin>/<ks>/<shard> Watermark, by the DC's collector
//	/repl/<dc>/<origin>                    ReplStats, on the collector's lease
package state
