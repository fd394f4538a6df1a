// Package embednats runs NATS JetStream servers inside the current process, one per DC, and sets up the
// streams that carry changes between DCs.
//
// A Mesh starts one server per DC. Each server is its own JetStream domain (named after the DC), keeps its
// store on disk under Options.Dir/<dc>, and is linked to every other DC's server by exactly one leafnode
// connection (the later server in Options.DCs solicits the earlier). Leafnode interest is isolated on
// every server: without that, a triangle of leafnodes loops and the servers back off for 30 s. A DC that
// is stopped and restarted keeps its ports and store, so the other DCs reconnect and it catches up.
//
// EnsureOutbound, EnsureInbound and EnsureCrossDC create the cross-DC streams: every DC publishes to its
// own outbound stream OUT_<dc>, and its inbound stream IN_<dc> sources every other DC's outbound stream
// across domains, by default through a durable consumer on the origin. Sourced messages keep their
// Nats-Msg-Id, so the inbound stream dedups within its window.
//
// Resumption after a DC restarts: the restarted DC's own inbound stream catches up in well under a second.
// The other DCs' durable sources of its outbound stream usually resume at once, but a consumer-reset
// request lost while the DC came back is retried only after the server's 5 s reset timeout. Ephemeral
// sources wait for the server's stall detector (10 s and more), hence durable sourcing by default.
package embednats
