package apierr_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// syncBuffer is a bytes.Buffer safe for the server goroutines that log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// topology answers GetStatus with the error its dc parameter asks for.
type topology struct {
	drplanev1.UnimplementedTopologyServiceServer
}

func (topology) GetStatus(ctx context.Context, req *drplanev1.GetStatusRequest) (*drplanev1.GetStatusResponse, error) {
	switch req.GetDc() {
	case "dc-a1":
		return &drplanev1.GetStatusResponse{Dcs: []*drplanev1.DCStatus{{
			Name:     "dc-a1",
			Clusters: []*drplanev1.ClusterStatus{{Name: "db", Instances: []*drplanev1.InstanceStatus{{Name: "dc-a1-db1", GtidBinlogPos: "0-1-5"}}}},
		}}}, nil
	case "unknown":
		return nil, apierr.InvalidArgument("dc", `unknown DC "unknown"`)
	case "moved":
		return nil, fmt.Errorf("route: %w", apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, "shard 3 moved").
			WithMetadata("owner_dc", "dc-b1"))
	case "boom":
		return nil, fmt.Errorf("scan instances: %s", secret)
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_INTERNAL, "unexpected test input")
}

// watchDesc is a server-streaming method that fails with a plain error, to
// exercise the stream interceptor over a real connection.
func watchDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "apierrtest.Watch",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Watch",
			ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
					return err
				}
				return fmt.Errorf("watch broke: %s", secret)
			},
		}},
	}
}

// startServer serves the test services over bufconn and returns a client
// connection. With intercept false no apierr interceptor is installed.
func startServer(t *testing.T, intercept bool, log *syncBuffer) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	var opts []grpc.ServerOption
	if intercept {
		o := apierr.Options{Logger: zerolog.New(log)}
		opts = append(opts,
			grpc.ChainUnaryInterceptor(apierr.UnaryServerInterceptor(o)),
			grpc.ChainStreamInterceptor(apierr.StreamServerInterceptor(o)))
	}
	srv := grpc.NewServer(opts...)
	drplanev1.RegisterTopologyServiceServer(srv, topology{})
	srv.RegisterService(watchDesc(), struct{}{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-served)
	})

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestRoundTripOverGRPC(t *testing.T) {
	log := &syncBuffer{}
	client := drplanev1.NewTopologyServiceClient(startServer(t, true, log))

	tests := []struct {
		dc       string
		grpc     codes.Code
		code     drplanev1.ErrorCode
		msg      string
		field    string
		metadata map[string]string
	}{
		{dc: "unknown", grpc: codes.InvalidArgument, code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, msg: `unknown DC "unknown"`, field: "dc"},
		{dc: "moved", grpc: codes.FailedPrecondition, code: drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, msg: "shard 3 moved", metadata: map[string]string{"owner_dc": "dc-b1"}},
		{dc: "boom", grpc: codes.Internal, code: drplanev1.ErrorCode_ERROR_CODE_INTERNAL, msg: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.dc, func(t *testing.T) {
			_, err := client.GetStatus(t.Context(), &drplanev1.GetStatusRequest{Dc: tt.dc})
			require.Error(t, err)
			assert.Equal(t, tt.grpc, status.Code(err))
			e, ok := apierr.FromError(err)
			require.True(t, ok)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, tt.msg, e.Message)
			assert.Equal(t, tt.field, e.Field)
			assert.Equal(t, tt.metadata, e.Metadata)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}

	resp, err := client.GetStatus(t.Context(), &drplanev1.GetStatusRequest{Dc: "dc-a1"})
	require.NoError(t, err)
	require.Len(t, resp.GetDcs(), 1)

	// The cause of the INTERNAL error is logged on the server, once; the
	// client errors above are not logged.
	logged := log.String()
	assert.Equal(t, 1, strings.Count(logged, "hunter2"), "log: %s", logged)
	assert.Contains(t, logged, drplanev1.TopologyService_GetStatus_FullMethodName)
	assert.NotContains(t, logged, "shard 3 moved")
}

func TestRoundTripDeadline(t *testing.T) {
	client := drplanev1.NewTopologyServiceClient(startServer(t, true, &syncBuffer{}))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := client.GetStatus(ctx, &drplanev1.GetStatusRequest{Dc: "slow"})
	require.Error(t, err)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, apierr.CodeOf(err))
	assert.False(t, apierr.Retryable(apierr.CodeOf(err)))
}

func TestStreamInterceptorOverGRPC(t *testing.T) {
	log := &syncBuffer{}
	conn := startServer(t, true, log)
	stream, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/apierrtest.Watch/Watch")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
	require.NoError(t, stream.CloseSend())
	require.NoError(t, stream.RecvMsg(&emptypb.Empty{}))
	err = stream.RecvMsg(&emptypb.Empty{})
	require.Error(t, err)
	assert.Equal(t, codes.Internal, status.Code(err))
	assert.NotContains(t, err.Error(), "hunter2")
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, apierr.CodeOf(err))
	assert.Contains(t, log.String(), "watch broke")
}

// Without the interceptors, *Error still reaches the client intact through
// its GRPCStatus method (plain errors would not be sanitized, though).
func TestGRPCStatusWithoutInterceptor(t *testing.T) {
	client := drplanev1.NewTopologyServiceClient(startServer(t, false, nil))
	_, err := client.GetStatus(t.Context(), &drplanev1.GetStatusRequest{Dc: "moved"})
	require.Error(t, err)
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, e.Code)
	assert.Equal(t, "dc-b1", e.Metadata["owner_dc"])
}
