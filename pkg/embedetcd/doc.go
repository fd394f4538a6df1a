// Package embedetcd runs etcd members inside the current process.
//
// A Cluster starts 1..N members on free loopback ports and is what tests and the single-box lab use. A
// Member is one etcd server; StartMember lets a process run a single member of a cluster whose other members
// live in other processes, with addresses chosen up front by PickPeers.
//
// Traps this package handles for its callers:
//   - clients are closed before members, otherwise closing a member waits for their streams (seconds);
//   - the embedded server's zap logs are silenced unless Options.Debug is set;
//   - clients get dial keepalives so a paused or stopped member does not leave calls hanging;
//   - ports are picked outside the kernel's ephemeral range and a start that loses a port race is retried;
//   - Member.Stop is a crash (no leadership hand-over, client connections dropped at once), so quorum-loss
//     tests see the member gone when Stop returns.
//
// Traps for code that runs against these clusters: the server raises lease TTLs below
// ceil(1.5 × election timeout), and a leader change renews every lease, so a dead holder's lease can
// outlive its TTL; never assume expiry at exactly the TTL.
package embedetcd
