package apierr

import (
	"context"
	"errors"
	"maps"

	"github.com/rs/zerolog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// ToStatus converts an error returned by a handler into the gRPC status sent
// to the client; nil stays nil. The status always carries a drplane ErrorInfo.
//
//   - *Error anywhere in the chain: its code, message, field and metadata
//     (codes outside the catalog, and UNSPECIFIED, become INTERNAL).
//   - context.DeadlineExceeded / context.Canceled: DEADLINE_EXCEEDED / CANCELED.
//   - a gRPC status that already carries a drplane ErrorInfo (an error
//     forwarded from another drplane server): unchanged.
//   - any other gRPC status (etcd, a foreign server): its code mapped onto the
//     catalog, with the catalog's generic message.
//   - anything else: INTERNAL with a generic message.
//
// Messages of unknown errors are never sent: log them on the server.
func ToStatus(err error) *status.Status { return toStatus(err, false) }

// toStatus is ToStatus; keepForeign keeps the message of a gRPC status
// without drplane ErrorInfo (the gateway's own decoding errors are meant for
// the client).
func toStatus(err error, keepForeign bool) *status.Status {
	if err == nil {
		return nil
	}
	if e, ok := errorAs(err); ok {
		return e.status()
	}
	if e, ok := contextError(err); ok {
		return e.status()
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		if FromServer(s) {
			return s
		}
		e := &Error{Code: fromGRPC(s.Code())}
		if keepForeign {
			e.Message = s.Message()
		}
		return e.status()
	}
	return (&Error{Code: drplanev1.ErrorCode_ERROR_CODE_INTERNAL}).status()
}

// FromServer reports whether s carries the ErrorInfo every drplane server
// error has (as opposed to a transport failure or a foreign server).
func FromServer(s *status.Status) bool {
	_, ok := drplaneInfo(s)
	return ok
}

// logInternal logs err when it reaches a client as INTERNAL (the client
// never sees its cause); key/val name the call.
func logInternal(log zerolog.Logger, s *status.Status, err error, key, val string) {
	if s.Code() == codes.Internal {
		log.Error().Err(err).Str(key, val).Msg("internal error returned to client")
	}
}

// FromError recovers the API error that err carries, on either side of the
// wire:
//
//   - an *Error in the chain is returned as is;
//   - a gRPC status (what a client call returns) is decoded: code, field and
//     metadata from its drplane ErrorInfo, or, for statuses without one
//     (transport failures, foreign servers), the code mapped from the gRPC
//     code; the message is the status message;
//   - context.DeadlineExceeded / context.Canceled map to DEADLINE_EXCEEDED /
//     CANCELED.
//
// ok is false for nil and for errors that carry none of these.
func FromError(err error) (*Error, bool) {
	if err == nil {
		return nil, false
	}
	if e, ok := errorAs(err); ok {
		return e, true
	}
	if s, ok := status.FromError(err); ok {
		if s.Code() == codes.OK {
			return nil, false
		}
		return fromStatus(s), true
	}
	return contextError(err)
}

// status builds the wire form of e.
func (e *Error) status() *status.Status {
	code := e.Code
	if _, ok := lookup(code); !ok || code == drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		code = drplanev1.ErrorCode_ERROR_CODE_INTERNAL
	}
	out := &Error{Code: code, Message: e.Message}
	s := status.New(GRPCCode(code), out.message())

	var md map[string]string
	if len(e.Metadata) > 0 || e.Field != "" {
		md = maps.Clone(e.Metadata)
		if md == nil {
			md = make(map[string]string, 1)
		}
		delete(md, FieldKey)
		if e.Field != "" {
			md[FieldKey] = e.Field
		}
	}
	ds, err := s.WithDetails(&errdetails.ErrorInfo{Reason: Reason(code), Domain: Domain, Metadata: md})
	if err != nil {
		// Only fails for an OK status or an unmarshalable detail; neither
		// can happen here. Fall back to the bare status.
		return s
	}
	return ds
}

// fromStatus decodes a non-OK status.
func fromStatus(s *status.Status) *Error {
	info, ok := drplaneInfo(s)
	if !ok {
		return &Error{Code: fromGRPC(s.Code()), Message: s.Message()}
	}
	code, ok := CodeFromReason(info.GetReason())
	if !ok {
		code = fromGRPC(s.Code())
	}
	e := &Error{Code: code, Message: s.Message()}
	if md := info.GetMetadata(); len(md) > 0 {
		e.Field = md[FieldKey]
		e.Metadata = maps.Clone(md)
		delete(e.Metadata, FieldKey)
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
	}
	return e
}

// drplaneInfo returns the first ErrorInfo of domain Domain in s.
func drplaneInfo(s *status.Status) (*errdetails.ErrorInfo, bool) {
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info, true
		}
	}
	return nil, false
}

// contextError maps context expiry and cancellation.
func contextError(err error) (*Error, bool) {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, Err: err}, true
	case errors.Is(err, context.Canceled):
		return &Error{Code: drplanev1.ErrorCode_ERROR_CODE_CANCELED, Err: err}, true
	}
	return nil, false
}
