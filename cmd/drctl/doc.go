// Command drctl is the operator CLI of the drplane control API.
//
// The API endpoint and token come from --api/--token, else from
// DRPLANE_API/DRPLANE_TOKEN, else from a lab file (--lab DIR or
// --lab DIR/lab.json, written by `drlab up`). Every command prints a table
// (-o table, the default) or JSON (-o json: the API's messages with proto
// field names).
//
//	drctl status [--dc DC]      DCs, MySQL clusters and instances, services
//	drctl switchover DC/CLUSTER [--to INSTANCE] [--timeout 30s]
//	                            graceful switchover, run by the DC's HA agent
//	drctl failovers [--dc DC] [--cluster C] [--limit N]
//	                            failover and switchover history, newest first
//	drctl killswitch set [--dc DC] [--cluster C] --reason R
//	drctl killswitch clear [--dc DC] [--cluster C]
//	drctl killswitch list       kill switches that stop automatic failover
//	drctl route KEYSPACE KEY    a key's shard, owner DC and that DC's master
//	drctl shards list KEYSPACE  the shard map with owners, backups, states
//	drctl shards show KEYSPACE SHARD
//	drctl shards move KEYSPACE SHARD --to DC [--backup DC] --reason R
//	drctl shards set-state KEYSPACE SHARD ACTIVE|FROZEN|MOVING --reason R
//	drctl dc set-state DC ACTIVE|DRAINING|EVACUATED|DOWN --reason R
//	                            changes, queued and applied by the leader
//	drctl evacuate DC [--to DC] [--parallel N] [--dry-run] [--wait] [--reason R]
//	                            hand every shard of a DC to another DC in waves
//	drctl restore DC [--move-home] [--parallel N] [--dry-run] [--wait]
//	                            the DC ACTIVE again, its home shards handed back
//	drctl operations list [--kind K] [--running] [--limit N]
//	drctl operations show|watch ID
//	drctl operations cancel|resume ID [--reason R] [--wait]
//	                            evacuations, restores and safe shard moves
//	drctl divergence list [--origin DC] [--keyspace KS] [--limit N]
//	drctl divergence show ID    changes refused after their shard's handoff
//	drctl divergence resolve ID --action discard|reapply --reason R
//	drctl audit search [QUERY] [--since 1h] [--until T] [--actor A] [--action X] [--limit N] [--page-token T]
//	                            audit events, newest first
//	drctl repl status [--dc DC] replication per DC pair, ledger backlog per DC
//	drctl repl request ORIGIN-DC:REQUEST-ID
//	                            where one request is (the request ledger)
//	drctl repl dlq list [--dc DC] [--origin DC] [--limit N] [--after SEQ]
//	drctl repl dlq retry --dc DC (SEQ... | --all)
//	                            dead letters, and putting them back
//	drctl completion SHELL      shell completion script (bash, zsh, fish, powershell)
//
// Exit codes: 0 success; 1 the API or drctl itself failed; 2 usage error
// (bad flag, argument or output format, no endpoint given); 3 the API
// refused the token (UNAUTHENTICATED or PERMISSION_DENIED); 4 the API could
// not be reached (UNAVAILABLE); 5 a followed operation (--wait, operations
// watch) ended CANCELED (one that ended FAILED exits 1). A followed
// operation reports on stdout: a progress bar on a terminal, one line per
// finished shard handoff otherwise, one JSON object per line with -o json.
// Errors are printed to stderr as
// "drctl: MESSAGE (code CODE)", CODE being the drplane error code.
package main
