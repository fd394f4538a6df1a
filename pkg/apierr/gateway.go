package apierr

import (
	"context"
	"errors"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"
)

// HTTPErrorHandler returns a grpc-gateway error handler (install it with
// runtime.WithErrorHandler) that renders every error as a google.rpc.Status
// JSON body with a drplane ErrorInfo, like the gRPC side:
//
//   - gateway routing errors (unknown path, wrong method) keep their HTTP code;
//   - gRPC statuses keep their message (they come from the drplane server
//     through its interceptors, or from the gateway's own request decoding);
//     a status without drplane ErrorInfo has its code mapped onto the catalog
//     (see fromGRPC) and an ErrorInfo added;
//   - everything else goes through ToStatus (unknown errors become INTERNAL
//     and are logged to opts.Logger).
//
// Meant for a gateway that forwards to the gRPC server (Register…FromEndpoint
// or Register…Handler with a client). With Register…HandlerServer the
// interceptors do not run, so handlers must return *Error values.
func HTTPErrorHandler(opts Options) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		var routing *runtime.HTTPStatusError
		if errors.As(err, &routing) {
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
			return
		}
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, gatewayStatus(opts, r.URL.Path, err).Err())
	}
}

// gatewayStatus is ToStatus, except that foreign gRPC statuses keep their
// message (the gateway's request-decoding errors are meant for the client).
func gatewayStatus(opts Options, path string, err error) *status.Status {
	s := toStatus(err, true)
	logInternal(opts.Logger, s, err, "path", path)
	return s
}
