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
//	drctl completion SHELL      shell completion script (bash, zsh, fish, powershell)
//
// Exit codes: 0 success; 1 the API or drctl itself failed; 2 usage error
// (bad flag, argument or output format, no endpoint given); 3 the API
// refused the token (UNAUTHENTICATED or PERMISSION_DENIED); 4 the API could
// not be reached (UNAVAILABLE). Errors are printed to stderr as
// "drctl: MESSAGE (code CODE)", CODE being the drplane error code.
package main
