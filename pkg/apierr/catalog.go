package apierr

import (
	"google.golang.org/grpc/codes"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// entry is one row of the error catalog.
type entry struct {
	// grpc is the gRPC status code the API error is sent with.
	grpc codes.Code
	// retryable reports whether the same request may succeed later without
	// being changed (possibly after refreshing a route or finding the leader).
	retryable bool
	// message is the client-facing text used when an error carries none.
	message string
}

// lookup is the catalog: every drplanev1.ErrorCode has exactly one row here.
// ok is false for values outside the catalog.
func lookup(code drplanev1.ErrorCode) (e entry, ok bool) {
	switch code {
	case drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return entry{grpc: codes.Internal, message: "internal error"}, true
	case drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return entry{grpc: codes.InvalidArgument, message: "invalid argument"}, true
	case drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return entry{grpc: codes.NotFound, message: "not found"}, true
	case drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
		return entry{grpc: codes.AlreadyExists, message: "already exists"}, true
	case drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
		return entry{grpc: codes.FailedPrecondition, message: "failed precondition"}, true
	case drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return entry{grpc: codes.Unauthenticated, message: "unauthenticated"}, true
	case drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		return entry{grpc: codes.PermissionDenied, message: "permission denied"}, true
	case drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return entry{grpc: codes.Unavailable, retryable: true, message: "unavailable"}, true
	case drplanev1.ErrorCode_ERROR_CODE_CONFLICT:
		return entry{grpc: codes.Aborted, retryable: true, message: "conflict"}, true
	case drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN:
		return entry{grpc: codes.Unavailable, retryable: true, message: "shard frozen"}, true
	case drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER:
		return entry{grpc: codes.FailedPrecondition, retryable: true, message: "not the shard owner"}, true
	case drplanev1.ErrorCode_ERROR_CODE_NOT_LEADER:
		return entry{grpc: codes.Unavailable, retryable: true, message: "not the leader"}, true
	case drplanev1.ErrorCode_ERROR_CODE_KILL_SWITCH_ENGAGED:
		return entry{grpc: codes.FailedPrecondition, message: "kill switch engaged"}, true
	case drplanev1.ErrorCode_ERROR_CODE_INTERNAL:
		return entry{grpc: codes.Internal, message: "internal error"}, true
	case drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:
		return entry{grpc: codes.DeadlineExceeded, message: "deadline exceeded"}, true
	case drplanev1.ErrorCode_ERROR_CODE_CANCELED:
		return entry{grpc: codes.Canceled, message: "canceled"}, true
	case drplanev1.ErrorCode_ERROR_CODE_UNIMPLEMENTED:
		return entry{grpc: codes.Unimplemented, message: "not implemented"}, true
	case drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED:
		return entry{grpc: codes.ResourceExhausted, retryable: true, message: "too many requests"}, true
	}
	return entry{}, false
}

// GRPCCode returns the gRPC status code an API error code is sent with.
// Values outside the catalog map to codes.Internal.
func GRPCCode(code drplanev1.ErrorCode) codes.Code {
	if e, ok := lookup(code); ok {
		return e.grpc
	}
	return codes.Internal
}

// Retryable reports whether a request that failed with code may succeed when
// retried unchanged after a backoff (for NOT_OWNER and NOT_LEADER: after
// refreshing the route or finding the leader). DEADLINE_EXCEEDED and CANCELED
// are not retryable as such: the effect of the first attempt is unknown.
func Retryable(code drplanev1.ErrorCode) bool {
	e, ok := lookup(code)
	return ok && e.retryable
}

// fromGRPC picks the catalog code for a gRPC status that carries no drplane
// ErrorInfo (transport failures, foreign servers, the gRPC runtime itself).
func fromGRPC(c codes.Code) drplanev1.ErrorCode {
	switch c {
	case codes.Canceled:
		return drplanev1.ErrorCode_ERROR_CODE_CANCELED
	case codes.InvalidArgument, codes.OutOfRange:
		return drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	case codes.DeadlineExceeded:
		return drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED
	case codes.NotFound:
		return drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND
	case codes.AlreadyExists:
		return drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS
	case codes.PermissionDenied:
		return drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	case codes.Unauthenticated:
		return drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	case codes.FailedPrecondition:
		return drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION
	case codes.Aborted:
		return drplanev1.ErrorCode_ERROR_CODE_CONFLICT
	case codes.Unavailable:
		return drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE
	case codes.ResourceExhausted:
		return drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED
	default: // OK, Unknown, Unimplemented, Internal, DataLoss
		return drplanev1.ErrorCode_ERROR_CODE_INTERNAL
	}
}
