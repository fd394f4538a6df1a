package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/mtls"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1 // the API answered with an error, or drctl failed
	exitUsage       = 2 // bad flags, arguments or output format; no endpoint
	exitAuth        = 3 // UNAUTHENTICATED or PERMISSION_DENIED
	exitUnavailable = 4 // the API cannot be reached
	exitCanceled    = 5 // a followed operation ended CANCELED
)

// usageError marks an error as the caller's fault (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// runError marks an error returned while a command ran, as opposed to one
// cobra raised while parsing flags and arguments.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// classify returns the exit code for err and the line to print for it.
//
// Errors cobra raises before a command runs (unknown command or flag, wrong
// number of arguments) are usage errors; so are usageError values, a missing
// endpoint and unusable TLS files. An error that carries a drplane error code
// (an API answer, or a transport failure the client mapped onto the catalog)
// exits by its code. Anything else a command returned exits 1.
func classify(err error) (int, string) {
	var ue usageError
	switch {
	case err == nil:
		return exitOK, ""
	case errors.As(err, &ue), errors.Is(err, apiclient.ErrNoEndpoint), errors.Is(err, apiclient.ErrPlaintext), errors.Is(err, mtls.ErrConfig):
		return exitUsage, "drctl: " + err.Error()
	}
	var oe operationEnded
	if errors.As(err, &oe) {
		return oe.code, oe.line
	}
	var re runError
	if !errors.As(err, &re) {
		return exitUsage, "drctl: " + err.Error()
	}
	e, ok := apierr.FromError(re.err)
	if !ok {
		return exitFailure, "drctl: " + re.err.Error()
	}
	return exitCodeOf(e.Code), apiLine(e)
}

// exitCodeOf maps a drplane error code to an exit code.
func exitCodeOf(code drplanev1.ErrorCode) int {
	switch code {
	case drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		return exitAuth
	case drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return exitUnavailable
	}
	return exitFailure
}

// apiLine formats an API error: "drctl: MESSAGE [(field F)] (code CODE)".
func apiLine(e *apierr.Error) string {
	var b strings.Builder
	b.WriteString("drctl: ")
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	b.WriteString(msg)
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s)", e.Field)
	}
	fmt.Fprintf(&b, " (code %s)", apierr.Reason(e.Code))
	return b.String()
}
