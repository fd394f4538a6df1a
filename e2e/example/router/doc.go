// Command router is the example of the client SDK (pkg/router): it writes
// orders of the lab's "orders" keyspace from one DC, the way an application
// running there would.
//
//	go run ./e2e/example/router --lab DIR --dc dc-a1 -n 20
//
// It reads the API endpoint and token from DIR/lab.json (or --api/--token,
// DRPLANE_API/DRPLANE_TOKEN), watches the keyspace's routes over one
// WatchRoutes stream, and for each order asks WriteDB for the handle to
// write through. Orders whose user's shard this DC owns are inserted into
// the owner master; for the others it prints which DC owns the shard and
// its master, where a real application would forward the write. Frozen
// shards, a missing master and a master that turned read-only are retried
// after a short backoff. One line per order goes to stdout, then a summary.
package main
