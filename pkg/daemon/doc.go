// Package daemon is the common life cycle of drplane's service binaries:
// flags, configuration (--config, --check-config, environment), logging,
// the etcd connection, registration on a lease, the health server, and a
// clean stop on SIGINT/SIGTERM. A service's main hands it a Spec and its
// own Run function.
package daemon
