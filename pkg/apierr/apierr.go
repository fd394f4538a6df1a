package apierr

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"google.golang.org/grpc/status"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Domain is the google.rpc.ErrorInfo domain of every drplane API error.
const Domain = "drplane.dev"

// FieldKey is the ErrorInfo metadata key naming the offending request field.
const FieldKey = "field"

// reasonPrefix is stripped from enum value names to form ErrorInfo reasons.
const reasonPrefix = "ERROR_CODE_"

// Error is an API error from the catalog. Message and Field are sent to the
// client; Err is the underlying cause, kept for logs and errors.Is/As on the
// server and never sent over the wire.
type Error struct {
	// Code is the catalog code; it decides the gRPC status code.
	Code drplanev1.ErrorCode
	// Message is the client-facing description. Empty means the catalog's
	// default text for Code.
	Message string
	// Field names the offending request field, if any (e.g. "dc").
	Field string
	// Metadata is extra machine-readable context sent in ErrorInfo metadata,
	// e.g. the owner DC with NOT_OWNER or the leader with NOT_LEADER. The key
	// FieldKey is reserved for Field.
	Metadata map[string]string
	// Err is the cause. Not sent to clients.
	Err error
}

// New returns an API error with a client-facing message.
func New(code drplanev1.ErrorCode, msg string) *Error {
	return &Error{Code: code, Message: msg}
}

// Newf is New with a formatted message. The message goes to clients: do not
// format internal errors into it; use Wrap for causes.
func Newf(code drplanev1.ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an API error whose cause is err. msg goes to the client, err
// stays on the server (logs, errors.Is/As through Unwrap).
func Wrap(err error, code drplanev1.ErrorCode, msg string) *Error {
	return &Error{Code: code, Message: msg, Err: err}
}

// InvalidArgument reports a bad value in request field field.
func InvalidArgument(field, msg string) *Error {
	return &Error{Code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: msg, Field: field}
}

// NotFound reports that the object of kind what named name does not exist,
// e.g. NotFound("dc", "dc-x") → `dc "dc-x" not found`.
func NotFound(what, name string) *Error {
	return &Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: fmt.Sprintf("%s %q not found", what, name)}
}

// Error formats the code reason, the field, the message and the cause.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(Reason(e.Code))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.message())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus makes *Error (also wrapped) a gRPC status error, so grpc-go and
// grpc-gateway render it like ToStatus even without the interceptors.
func (e *Error) GRPCStatus() *status.Status { return e.status() }

// WithMetadata returns a copy of e with key=value added to Metadata.
func (e *Error) WithMetadata(key, value string) *Error {
	c := *e
	c.Metadata = maps.Clone(e.Metadata)
	if c.Metadata == nil {
		c.Metadata = make(map[string]string, 1)
	}
	c.Metadata[key] = value
	return &c
}

func (e *Error) message() string {
	if e.Message != "" {
		return e.Message
	}
	if ent, ok := lookup(e.Code); ok {
		return ent.message
	}
	return "internal error"
}

// Reason returns the ErrorInfo reason for code: its enum name without the
// "ERROR_CODE_" prefix, e.g. "SHARD_FROZEN".
func Reason(code drplanev1.ErrorCode) string {
	return strings.TrimPrefix(code.String(), reasonPrefix)
}

// CodeFromReason is the inverse of Reason. ok is false for reasons outside
// the catalog.
func CodeFromReason(reason string) (code drplanev1.ErrorCode, ok bool) {
	if reason == "" || strings.HasPrefix(reason, reasonPrefix) {
		return drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED, false
	}
	v, ok := drplanev1.ErrorCode_value[reasonPrefix+reason]
	return drplanev1.ErrorCode(v), ok
}

// CodeOf returns the catalog code err carries: UNSPECIFIED for nil, the code
// of an *Error or of a gRPC status (see FromError), INTERNAL otherwise.
func CodeOf(err error) drplanev1.ErrorCode {
	if err == nil {
		return drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED
	}
	if e, ok := FromError(err); ok {
		return e.Code
	}
	return drplanev1.ErrorCode_ERROR_CODE_INTERNAL
}

// Is reports whether err carries the catalog code code.
func Is(err error, code drplanev1.ErrorCode) bool {
	return err != nil && CodeOf(err) == code
}

// errorAs is errors.As for *Error.
func errorAs(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e, true
	}
	return nil, false
}

// Describe renders err with its catalog code, the way audit events and
// logs record API errors: an *Error as itself, a gRPC status carrying an
// ErrorInfo as "REASON: message", anything else as its text.
func Describe(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Error()
	}
	if e, ok := FromError(err); ok {
		return Reason(e.Code) + ": " + e.Message
	}
	return err.Error()
}
