// Package apiclient connects to the drplane control API over gRPC.
//
// Resolve turns what an operator gave (flags, DRPLANE_API / DRPLANE_TOKEN,
// a lab.json written by `drlab up`) into Options; Dial opens a client whose
// every call carries the bearer token ("authorization: Bearer <token>"
// metadata) and, when the call's context has none, a deadline of
// Options.Timeout. Transport failures come back as gRPC UNAVAILABLE statuses
// naming the address, so apierr.FromError classifies them like any other API
// error; a call that runs out of time before a connection was ever made is
// reported as UNAVAILABLE too, not as DEADLINE_EXCEEDED.
package apiclient
