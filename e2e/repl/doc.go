// Package repl tests cross-DC replication end to end: reship and collector
// run as processes from the built binaries, in three DCs (dc-a1 and dc-a2 in
// city-a, dc-b1 in city-b), each with its own MariaDB cluster, against one
// embedded etcd and a NATS JetStream mesh. The tests write through the
// application account and check that every DC converges, that each request
// is applied exactly once (through redeliveries, a collector crash, a
// master failover and a DC outage) and that nothing is shipped back.
// TestEvacuation adds two coordinator processes and drctl: the acceptance
// of planned evacuation and restore under SDK writes (a leader killed -9
// mid-evacuation, a stale router's late write listed as divergence, cancel
// and resume, restore with --move-home).
// BenchmarkReplication measures the apply rate against the raw insert rate
// and the commit-to-visible lag, BenchmarkEvacuation the evacuation and
// restore of a third of a 1,024-shard keyspace under SDK writes
// (docs/benchmarks.md).
//
// The binaries come from $DRPLANE_BIN (make test builds them) or a go build.
// With DRPLANE_TEST_LOGS=<dir> the services log at debug level into that
// directory and the logs are kept.
package repl
