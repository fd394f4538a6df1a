// Package apierr is the one place where drplane API errors are defined and
// mapped to gRPC status.
//
// Handlers return *Error values built from the stable catalog in
// drplanev1.ErrorCode (New, Newf, Wrap, InvalidArgument). The server
// interceptors (UnaryServerInterceptor, StreamServerInterceptor) turn every
// returned error into a gRPC status through ToStatus, so gRPC and the REST
// gateway render them identically: the status code comes from GRPCCode, and
// the details carry a google.rpc.ErrorInfo with Domain "drplane.dev", Reason
// set to the code name without its "ERROR_CODE_" prefix, and the offending
// field (if any) under metadata key "field". Errors that are not *Error become
// INTERNAL with a generic message, so internals never reach clients; context
// deadline and cancellation map to DEADLINE_EXCEEDED and CANCELED.
//
// Install the interceptors first in the chain (grpc.ChainUnaryInterceptor),
// so errors from later interceptors (authentication, audit) are converted
// too. For the REST gateway, HTTPErrorHandler renders errors the same way.
//
// Clients recover the code with FromError or CodeOf and decide whether to
// retry with Retryable.
package apierr
