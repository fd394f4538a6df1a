package apiclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Options says where the API is and how to talk to it.
type Options struct {
	// Addr is host:port of the coordinator's gRPC endpoint.
	Addr string
	// Token is the bearer token sent with every call. Empty sends none (the
	// server then answers UNAUTHENTICATED).
	Token string
	// TLS, when non-nil, secures the connection (mutual TLS when it holds a
	// client certificate). Nil means plaintext, meant for loopback labs.
	TLS *tls.Config
	// Timeout is the deadline given to every call whose context has none.
	// Zero means no deadline.
	Timeout time.Duration
	// Source tells where Addr came from ("--api", "DRPLANE_API", "--lab
	// PATH"), for error messages. Optional.
	Source string
}

// Client is a connection to the control API with one stub per service.
// It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	addr string
	// where names addr in errors: "127.0.0.1:P (from --lab …)".
	where string

	// Topology answers topology and status questions.
	Topology drplanev1.TopologyServiceClient
	// Failover runs switchovers and lists failovers and kill switches.
	Failover drplanev1.FailoverServiceClient
	// Shard routes keys, watches routing tables and changes the shard map
	// and DC states.
	Shard drplanev1.ShardServiceClient
	// Evacuation evacuates and restores DCs and follows their operations.
	Evacuation drplanev1.EvacuationServiceClient
	// CityFailover fails lost DCs over and shows city failovers.
	CityFailover drplanev1.CityFailoverServiceClient
	// Audit searches the audit log.
	Audit drplanev1.AuditServiceClient
	// Replication reports cross-DC replication, finds requests in the
	// ledger and lists and retries dead letters.
	Replication drplanev1.ReplicationServiceClient
	// Divergence lists the changes refused after a shard's handoff.
	Divergence drplanev1.DivergenceServiceClient
}

// Dial returns a client for the API at o.Addr. The connection is made in
// the background; failures surface on the first call as UNAVAILABLE.
func Dial(ctx context.Context, o Options) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Addr == "" {
		return nil, fmt.Errorf("%w: empty address", ErrNoEndpoint)
	}
	tc := insecure.NewCredentials()
	if o.TLS != nil {
		tc = credentials.NewTLS(o.TLS)
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if o.Token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: o.Token}))
	}
	c := &Client{addr: o.Addr, where: o.Addr}
	if o.Source != "" {
		c.where = o.Addr + " (from " + o.Source + ")"
	}
	dopts = append(dopts, grpc.WithChainUnaryInterceptor(c.unary(o.Timeout)))
	conn, err := grpc.NewClient(o.Addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("apiclient: %s: %w", o.Addr, err)
	}
	conn.Connect()
	c.conn = conn
	c.Topology = drplanev1.NewTopologyServiceClient(conn)
	c.Failover = drplanev1.NewFailoverServiceClient(conn)
	c.Shard = drplanev1.NewShardServiceClient(conn)
	c.Evacuation = drplanev1.NewEvacuationServiceClient(conn)
	c.CityFailover = drplanev1.NewCityFailoverServiceClient(conn)
	c.Audit = drplanev1.NewAuditServiceClient(conn)
	c.Replication = drplanev1.NewReplicationServiceClient(conn)
	c.Divergence = drplanev1.NewDivergenceServiceClient(conn)
	return c, nil
}

// Addr is the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the client's connection, carrying the bearer token and TLS, for
// other stubs such as the router SDK (pkg/router).
func (c *Client) Conn() grpc.ClientConnInterface { return c.conn }

// unary applies the default deadline and names the address in transport
// failures.
func (c *Client) unary(timeout time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			return nil
		}
		return c.transportError(err, cc.GetState())
	}
}

// transportError rewrites errors that mean "the API could not be reached":
// an UNAVAILABLE status the server did not send (no drplane ErrorInfo), and
// a deadline that ran out while the connection was still not ready.
// Everything else is returned unchanged.
func (c *Client) transportError(err error, state connectivity.State) error {
	s, ok := status.FromError(err)
	if !ok || apierr.FromServer(s) {
		return err
	}
	switch {
	case s.Code() == codes.Unavailable:
		return status.Errorf(codes.Unavailable, "cannot reach the API at %s: %s", c.where, s.Message())
	case s.Code() == codes.DeadlineExceeded && state != connectivity.Ready:
		return status.Errorf(codes.Unavailable, "cannot reach the API at %s: no connection before the deadline (connection %s)", c.where, stateName(state))
	}
	return err
}

func stateName(s connectivity.State) string {
	switch s {
	case connectivity.Idle:
		return "idle"
	case connectivity.Connecting:
		return "still connecting"
	case connectivity.TransientFailure:
		return "failing"
	case connectivity.Shutdown:
		return "closed"
	}
	return s.String()
}

// bearer sends the token as "authorization: Bearer <token>" metadata.
type bearer struct{ token string }

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. The
// token is allowed over plaintext because labs talk over loopback; anything
// else should set Options.TLS.
func (bearer) RequireTransportSecurity() bool { return false }
