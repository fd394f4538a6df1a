package guard

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bufconnAddr is the address of the in-process gateway's connection.
type bufconnAddr struct{}

func (bufconnAddr) Network() string { return "bufconn" }
func (bufconnAddr) String() string  { return "bufconn" }

func grpcCtx(addr net.Addr, kv ...string) context.Context {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	return peer.NewContext(ctx, &peer.Peer{Addr: addr})
}

func tcp(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }

func TestPeerOf(t *testing.T) {
	proxies, err := ParseProxies([]string{"10.1.0.0/16", "192.0.2.9"})
	require.NoError(t, err)
	r := Resolver{Proxies: proxies}
	cases := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"a direct caller is its TCP peer", grpcCtx(tcp("198.51.100.4", 5000)), "198.51.100.4:5000"},
		{"x-forwarded-for of an untrusted caller is ignored", grpcCtx(tcp("198.51.100.4", 5000), "x-forwarded-for", "6.6.6.6"), "198.51.100.4:5000"},
		{"a trusted proxy's x-forwarded-for names the client", grpcCtx(tcp("10.1.2.3", 5000), "x-forwarded-for", "203.0.113.7"), "203.0.113.7"},
		{"only the hops the proxies added count", grpcCtx(tcp("10.1.2.3", 5000), "x-forwarded-for", "6.6.6.6, 203.0.113.7, 192.0.2.9"), "203.0.113.7"},
		{"a trusted proxy without x-forwarded-for is the caller", grpcCtx(tcp("10.1.2.3", 5000)), "10.1.2.3:5000"},
		{"garbage ends the chain", grpcCtx(tcp("10.1.2.3", 5000), "x-forwarded-for", "203.0.113.7, "+strings.Repeat("x", 5000)), "10.1.2.3:5000"},
		{"the gateway's last entry is its REST client", grpcCtx(bufconnAddr{}, "x-forwarded-for", "6.6.6.6, 198.51.100.4"), "198.51.100.4"},
		{"a REST client that is a trusted proxy forwards", grpcCtx(bufconnAddr{}, "x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.9.9"), "203.0.113.7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { assert.Equal(t, c.want, r.PeerOf(c.ctx)) })
	}
	assert.Equal(t, "198.51.100.4:5000", Resolver{}.PeerOf(grpcCtx(tcp("198.51.100.4", 5000), "x-forwarded-for", "6.6.6.6")),
		"no trusted proxies: the TCP peer")

	req := httptest.NewRequest("GET", "/v1/status", nil)
	req.RemoteAddr = "10.1.2.3:4444"
	req.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.7")
	assert.Equal(t, "203.0.113.7", r.PeerOfHTTP(req))
	req.RemoteAddr = "198.51.100.4:4444"
	assert.Equal(t, "198.51.100.4:4444", r.PeerOfHTTP(req))

	_, err = ParseProxies([]string{"10.0.0.0/8", "not-an-address"})
	require.Error(t, err)
}

func TestCallerID(t *testing.T) {
	authn, err := auth.New([]auth.Token{{Name: "dashboard", Role: "viewer", SHA256: auth.Hash("v")}}, nil)
	require.NoError(t, err)
	r := Resolver{Auth: authn}
	assert.Equal(t, "token:dashboard", r.Of(grpcCtx(tcp("198.51.100.4", 1), "authorization", "Bearer v")).ID)
	assert.Equal(t, "peer:198.51.100.4", r.Of(grpcCtx(tcp("198.51.100.4", 1), "authorization", "Bearer unknown")).ID,
		"an unknown token is any string: the address names the caller")
	assert.Equal(t, "peer:2001:db8:1:2::/64", r.Of(grpcCtx(tcp("2001:db8:1:2::99", 1))).ID, "an IPv6 caller by its /64")
}

func TestThrottleRefusedCallers(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	var throttled []string
	g := New(Options{RefusedRate: 2, RefusedBurst: 3, Now: clock.Now,
		Throttled: func(_ context.Context, c Caller, target string, _ error) {
			throttled = append(throttled, c.ID+" "+target)
		}})
	denied := apierr.New(drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "no")
	call := func(ip string, answer error) error {
		_, err := g.Unary()(grpcCtx(tcp(ip, 1)), nil, &grpc.UnaryServerInfo{FullMethod: "/m"},
			func(context.Context, any) (any, error) { return nil, answer })
		return err
	}
	for range 3 {
		require.ErrorIs(t, call("198.51.100.4", denied), denied)
	}
	err := call("198.51.100.4", nil)
	require.True(t, apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED), "%v", err)
	e, _ := apierr.FromError(apierr.ToStatus(err).Err())
	assert.Equal(t, "500", e.Metadata[RetryAfterKey], "one token at 2/s")
	assert.Equal(t, []string{"peer:198.51.100.4 /m"}, throttled)
	require.NoError(t, call("198.51.100.5", nil), "another caller is not throttled")

	clock.Add(500 * time.Millisecond)
	require.NoError(t, call("198.51.100.4", nil), "one token back")
	require.NoError(t, call("198.51.100.4", nil), "allowed calls spend nothing")
	require.ErrorIs(t, call("198.51.100.4", denied), denied)
	require.Error(t, call("198.51.100.4", nil))
}

func TestThrottleIdentitiesBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	g := New(Options{RefusedRate: 1, RefusedBurst: 1, MaxIdentities: 2, Now: clock.Now})
	denied := apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "no")
	for _, ip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"} {
		_, _ = g.Unary()(grpcCtx(tcp(ip, 1)), nil, &grpc.UnaryServerInfo{FullMethod: "/m"},
			func(context.Context, any) (any, error) { return nil, denied })
	}
	assert.Len(t, g.buckets, 3, "two identities and the shared overflow")
	clock.Add(time.Hour)
	g.bucket("peer:198.51.100.9")
	assert.Len(t, g.buckets, 1, "refilled buckets are forgotten when room is needed")
}
