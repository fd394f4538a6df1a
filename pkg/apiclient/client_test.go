package apiclient_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// seen is what the test server observed of one call.
type seen struct {
	auth        []string
	hasDeadline bool
	deadline    time.Time
}

// topology is a TopologyService that reports what each call carried.
type topology struct {
	drplanev1.UnimplementedTopologyServiceServer
	calls chan seen
}

func (s *topology) GetStatus(ctx context.Context, req *drplanev1.GetStatusRequest) (*drplanev1.GetStatusResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	dl, ok := ctx.Deadline()
	s.calls <- seen{auth: md.Get("authorization"), hasDeadline: ok, deadline: dl}
	if req.GetDc() == "dc-x" {
		return nil, apierr.NotFound("dc", "dc-x")
	}
	return &drplanev1.GetStatusResponse{Dcs: []*drplanev1.DCStatus{{Name: req.GetDc()}}}, nil
}

// serve runs the topology server on a free loopback port until the test ends.
func serve(t *testing.T, tc *tls.Config) (string, *topology) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(opts...)
	srv := &topology{calls: make(chan seen, 16)}
	drplanev1.RegisterTopologyServiceServer(gs, srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), srv
}

func dial(t *testing.T, o apiclient.Options) *apiclient.Client {
	t.Helper()
	c, err := apiclient.Dial(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestBearerTokenAndDefaultDeadline(t *testing.T) {
	addr, srv := serve(t, nil)
	c := dial(t, apiclient.Options{Addr: addr, Token: "s3cret", Timeout: 5 * time.Second})
	assert.Equal(t, addr, c.Addr())

	start := time.Now()
	resp, err := c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{Dc: "dc-a1"})
	require.NoError(t, err)
	assert.Equal(t, "dc-a1", resp.GetDcs()[0].GetName())
	got := <-srv.calls
	assert.Equal(t, []string{"Bearer s3cret"}, got.auth)
	require.True(t, got.hasDeadline, "Timeout becomes the call's deadline")
	assert.WithinDuration(t, start.Add(5*time.Second), got.deadline, time.Second)

	// A deadline of the caller's own is kept.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = c.Topology.GetStatus(ctx, &drplanev1.GetStatusRequest{})
	require.NoError(t, err)
	got = <-srv.calls
	assert.WithinDuration(t, start.Add(time.Minute), got.deadline, 5*time.Second)
}

func TestNoTokenNoDeadline(t *testing.T) {
	addr, srv := serve(t, nil)
	c := dial(t, apiclient.Options{Addr: addr})
	_, err := c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{})
	require.NoError(t, err)
	got := <-srv.calls
	assert.Empty(t, got.auth)
	assert.False(t, got.hasDeadline)
}

func TestServerErrorsPassThrough(t *testing.T) {
	addr, _ := serve(t, nil)
	c := dial(t, apiclient.Options{Addr: addr, Token: "t"})
	_, err := c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{Dc: "dc-x"})
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, e.Code)
	assert.Equal(t, `dc "dc-x" not found`, e.Message)
}

func TestRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	c := dial(t, apiclient.Options{Addr: addr, Token: "t", Timeout: 5 * time.Second})
	_, err = c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{})
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, e.Code)
	assert.Contains(t, e.Message, "cannot reach the API at "+addr)
}

func TestSilentPeerIsUnavailable(t *testing.T) {
	// A listener that never answers: TCP connects, the HTTP/2 handshake never
	// completes, so the deadline runs out before the connection is ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })

	c := dial(t, apiclient.Options{Addr: ln.Addr().String(), Token: "t", Timeout: 300 * time.Millisecond})
	_, err = c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{})
	e, ok := apierr.FromError(err)
	require.True(t, ok)
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, e.Code, "got %v", err)
	assert.Contains(t, e.Message, "no connection before the deadline")
}

func TestDialNeedsAddress(t *testing.T) {
	_, err := apiclient.Dial(context.Background(), apiclient.Options{})
	require.ErrorIs(t, err, apiclient.ErrNoEndpoint)
}
