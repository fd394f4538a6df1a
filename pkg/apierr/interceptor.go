package apierr

import (
	"context"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
)

// Options configures the server interceptors.
type Options struct {
	// Logger receives one error-level line, with the full error chain, for
	// every error that reaches the client as INTERNAL (whose cause the client
	// never sees). The zero value logs nothing.
	Logger zerolog.Logger
}

// UnaryServerInterceptor converts every error a unary handler returns with
// ToStatus.
func UnaryServerInterceptor(opts Options) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, convert(opts.Logger, info.FullMethod, err)
		}
		return resp, nil
	}
}

// StreamServerInterceptor converts every error a streaming handler returns
// with ToStatus.
func StreamServerInterceptor(opts Options) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return convert(opts.Logger, info.FullMethod, err)
		}
		return nil
	}
}

func convert(log zerolog.Logger, method string, err error) error {
	s := ToStatus(err)
	logInternal(log, s, err, "method", method)
	return s.Err()
}
