// Package harness starts real parts (MariaDB, etcd, NATS JetStream, toxiproxy) for integration tests.
package harness
