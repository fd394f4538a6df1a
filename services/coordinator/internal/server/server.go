// Package server serves the coordinator's control API: gRPC on one port,
// and on another the same services as REST/JSON through grpc-gateway plus
// the OpenAPI document at /openapi.json. Both sides share one error catalog
// (pkg/apierr) and bearer-token authorization.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/proto/openapi"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// Options configures the API server.
type Options struct {
	GRPCAddr string
	HTTPAddr string
	// TLS, when non-nil, serves both ports over TLS (mutual when it
	// requires client certificates).
	TLS      *tls.Config
	Auth     *auth.Authenticator
	Topology drplanev1.TopologyServiceServer
	// Failover, when non-nil, serves FailoverService.
	Failover drplanev1.FailoverServiceServer
	// Shards, when non-nil, serves ShardService.
	Shards drplanev1.ShardServiceServer
	// Evacuation, when non-nil, serves EvacuationService.
	Evacuation drplanev1.EvacuationServiceServer
	// Divergence, when non-nil, serves DivergenceService.
	Divergence drplanev1.DivergenceServiceServer
	// CityFailover, when non-nil, serves CityFailoverService.
	CityFailover drplanev1.CityFailoverServiceServer
	// Audit, when non-nil, serves AuditService.
	Audit drplanev1.AuditServiceServer
	// Replication, when non-nil, serves ReplicationService.
	Replication drplanev1.ReplicationServiceServer
	// PreAuth are unary interceptors that run after the error mapping and
	// before authentication, e.g. to audit refused calls.
	PreAuth []grpc.UnaryServerInterceptor
	// PreAuthStream are the stream interceptors in the same place.
	PreAuthStream []grpc.StreamServerInterceptor
	// RefusedREST, when non-nil, is told of every REST call refused as
	// UNAUTHENTICATED before the gateway read anything of it (e.g. to
	// audit it; the gRPC interceptors never see such a call).
	RefusedREST func(r *http.Request, err error)
	// AdmitREST, when non-nil, runs first for every REST call: an error
	// answers the call at once (e.g. a throttled caller's
	// RESOURCE_EXHAUSTED).
	AdmitREST func(r *http.Request) error
	// UI, when non-nil, serves the web dashboard under /ui on the HTTP
	// port. Its requests end when the server shuts down (its event stream
	// stays open otherwise).
	UI http.Handler
	// MaxBodyBytes bounds a REST request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	Logger       zerolog.Logger
}

// Transport limits of both ports.
const (
	// DefaultMaxBodyBytes is Options.MaxBodyBytes when unset.
	DefaultMaxBodyBytes = 1 << 20
	// MaxRecvMsgBytes bounds one gRPC request message.
	MaxRecvMsgBytes = 4 << 20
	// MaxConcurrentStreams bounds the calls in flight on one gRPC
	// connection.
	MaxConcurrentStreams = 256
)

// Server is the API server.
type Server struct {
	o      Options
	grpcLn net.Listener
	httpLn net.Listener
}

// New returns a server; Listen binds, Run serves.
func New(o Options) *Server { return &Server{o: o} }

// Listen binds both ports so that the addresses are known before Run.
func (s *Server) Listen() error {
	g, err := net.Listen("tcp", s.o.GRPCAddr)
	if err != nil {
		return err
	}
	h, err := net.Listen("tcp", s.o.HTTPAddr)
	if err != nil {
		_ = g.Close()
		return err
	}
	s.grpcLn, s.httpLn = g, h
	return nil
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// HTTPAddr is the bound REST address.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// Policy is the least role each API method needs.
func Policy() map[string]auth.Role {
	return map[string]auth.Role{
		drplanev1.TopologyService_GetTopology_FullMethodName: auth.RoleViewer,
		drplanev1.TopologyService_GetStatus_FullMethodName:   auth.RoleViewer,

		drplanev1.FailoverService_ListFailovers_FullMethodName:       auth.RoleViewer,
		drplanev1.FailoverService_ListKillSwitches_FullMethodName:    auth.RoleViewer,
		drplanev1.FailoverService_Switchover_FullMethodName:          auth.RoleOperator,
		drplanev1.FailoverService_SetKillSwitch_FullMethodName:       auth.RoleAdmin,
		drplanev1.FailoverService_ClearKillSwitch_FullMethodName:     auth.RoleAdmin,
		drplanev1.FailoverService_ReleaseFailoverHold_FullMethodName: auth.RoleOperator,

		drplanev1.ShardService_Route_FullMethodName:         auth.RoleViewer,
		drplanev1.ShardService_BatchRoute_FullMethodName:    auth.RoleViewer,
		drplanev1.ShardService_WatchRoutes_FullMethodName:   auth.RoleViewer,
		drplanev1.ShardService_ListShards_FullMethodName:    auth.RoleViewer,
		drplanev1.ShardService_GetShard_FullMethodName:      auth.RoleViewer,
		drplanev1.ShardService_MoveShard_FullMethodName:     auth.RoleAdmin,
		drplanev1.ShardService_SetShardState_FullMethodName: auth.RoleAdmin,
		drplanev1.ShardService_SetDCState_FullMethodName:    auth.RoleAdmin,

		drplanev1.ShardService_AckRoutes_FullMethodName: auth.RoleViewer,

		drplanev1.EvacuationService_Evacuate_FullMethodName:        auth.RoleOperator,
		drplanev1.EvacuationService_Restore_FullMethodName:         auth.RoleOperator,
		drplanev1.EvacuationService_ListOperations_FullMethodName:  auth.RoleViewer,
		drplanev1.EvacuationService_GetOperation_FullMethodName:    auth.RoleViewer,
		drplanev1.EvacuationService_WatchOperation_FullMethodName:  auth.RoleViewer,
		drplanev1.EvacuationService_CancelOperation_FullMethodName: auth.RoleOperator,
		drplanev1.EvacuationService_ResumeOperation_FullMethodName: auth.RoleOperator,

		drplanev1.DivergenceService_ListDivergence_FullMethodName:    auth.RoleViewer,
		drplanev1.DivergenceService_GetDivergence_FullMethodName:     auth.RoleViewer,
		drplanev1.DivergenceService_ResolveDivergence_FullMethodName: auth.RoleOperator,

		drplanev1.CityFailoverService_FailOverDC_FullMethodName:        auth.RoleOperator,
		drplanev1.CityFailoverService_ListCityFailovers_FullMethodName: auth.RoleViewer,
		drplanev1.CityFailoverService_GetCityFailover_FullMethodName:   auth.RoleViewer,

		drplanev1.AuditService_SearchAudit_FullMethodName: auth.RoleViewer,

		drplanev1.ReplicationService_GetReplicationStatus_FullMethodName: auth.RoleViewer,
		drplanev1.ReplicationService_GetRequest_FullMethodName:           auth.RoleViewer,
		drplanev1.ReplicationService_ListDeadLetters_FullMethodName:      auth.RoleViewer,
		drplanev1.ReplicationService_RetryDeadLetters_FullMethodName:     auth.RoleOperator,
	}
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.grpcLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	eo := apierr.Options{Logger: s.o.Logger}
	// newGRPC builds a server with the error and auth interceptors and every
	// service registered, plus any transport options.
	unary := append([]grpc.UnaryServerInterceptor{apierr.UnaryServerInterceptor(eo)}, s.o.PreAuth...)
	unary = append(unary, s.o.Auth.Unary())
	stream := append([]grpc.StreamServerInterceptor{apierr.StreamServerInterceptor(eo)}, s.o.PreAuthStream...)
	stream = append(stream, s.o.Auth.Stream())
	newGRPC := func(extra ...grpc.ServerOption) *grpc.Server {
		opts := append([]grpc.ServerOption{
			grpc.ChainUnaryInterceptor(unary...),
			grpc.ChainStreamInterceptor(stream...),
		}, extra...)
		srv := grpc.NewServer(opts...)
		drplanev1.RegisterTopologyServiceServer(srv, s.o.Topology)
		if s.o.Failover != nil {
			drplanev1.RegisterFailoverServiceServer(srv, s.o.Failover)
		}
		if s.o.Shards != nil {
			drplanev1.RegisterShardServiceServer(srv, s.o.Shards)
		}
		if s.o.Evacuation != nil {
			drplanev1.RegisterEvacuationServiceServer(srv, s.o.Evacuation)
		}
		if s.o.Divergence != nil {
			drplanev1.RegisterDivergenceServiceServer(srv, s.o.Divergence)
		}
		if s.o.CityFailover != nil {
			drplanev1.RegisterCityFailoverServiceServer(srv, s.o.CityFailover)
		}
		if s.o.Audit != nil {
			drplanev1.RegisterAuditServiceServer(srv, s.o.Audit)
		}
		if s.o.Replication != nil {
			drplanev1.RegisterReplicationServiceServer(srv, s.o.Replication)
		}
		return srv
	}
	transport := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		// Clients may ping at most every 10 s (also between calls);
		// faster pings close the connection. Idle connections are closed
		// after 5 minutes, unanswered pings after 20 s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if s.o.TLS != nil {
		transport = append(transport, grpc.Creds(credentials.NewTLS(s.o.TLS)))
	}
	gs := newGRPC(transport...)

	// The gateway reaches an identical gRPC server in memory, so that
	// interceptors run for REST calls too and no client certificate is needed
	// on the internal hop.
	inner := bufconn.Listen(1 << 20)
	igs := newGRPC()
	conn, err := grpc.NewClient("passthrough:///inmemory",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return inner.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	gw := runtime.NewServeMux(
		runtime.WithErrorHandler(apierr.HTTPErrorHandler(eo)),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	if err := drplanev1.RegisterTopologyServiceHandlerClient(ctx, gw, drplanev1.NewTopologyServiceClient(conn)); err != nil {
		return err
	}
	if err := drplanev1.RegisterFailoverServiceHandlerClient(ctx, gw, drplanev1.NewFailoverServiceClient(conn)); err != nil {
		return err
	}
	if err := drplanev1.RegisterShardServiceHandlerClient(ctx, gw, drplanev1.NewShardServiceClient(conn)); err != nil {
		return err
	}
	if err := drplanev1.RegisterEvacuationServiceHandlerClient(ctx, gw, drplanev1.NewEvacuationServiceClient(conn)); err != nil {
		return err
	}
	if s.o.Divergence != nil {
		if err := drplanev1.RegisterDivergenceServiceHandlerClient(ctx, gw, drplanev1.NewDivergenceServiceClient(conn)); err != nil {
			return err
		}
	}
	if s.o.CityFailover != nil {
		if err := drplanev1.RegisterCityFailoverServiceHandlerClient(ctx, gw, drplanev1.NewCityFailoverServiceClient(conn)); err != nil {
			return err
		}
	}
	if s.o.Audit != nil {
		if err := drplanev1.RegisterAuditServiceHandlerClient(ctx, gw, drplanev1.NewAuditServiceClient(conn)); err != nil {
			return err
		}
	}
	if s.o.Replication != nil {
		if err := drplanev1.RegisterReplicationServiceHandlerClient(ctx, gw, drplanev1.NewReplicationServiceClient(conn)); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/openapi.json", openapi.Handler())
	mux.Handle("/", s.authenticateFirst(gw, eo))
	streams, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	if s.o.UI != nil {
		ui := untilDone(streams, s.o.UI)
		mux.Handle("/ui", ui)
		mux.Handle("/ui/", ui)
	}
	// No WriteTimeout: server-streaming calls (watches) stay open.
	hs := &http.Server{
		Handler: mux, TLSConfig: s.o.TLS,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	hs.RegisterOnShutdown(stopStreams)

	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(s.grpcLn) }()
	go func() { errc <- igs.Serve(inner) }()
	go func() {
		if s.o.TLS != nil {
			errc <- hs.ServeTLS(s.httpLn, "", "")
			return
		}
		errc <- hs.Serve(s.httpLn)
	}()
	s.o.Logger.Info().Str("grpc", s.GRPCAddr()).Str("http", s.HTTPAddr()).Bool("tls", s.o.TLS != nil).Msg("API listening")
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); igs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		gs.Stop()
		igs.Stop()
	}
	if errors.Is(runErr, http.ErrServerClosed) || errors.Is(runErr, grpc.ErrServerStopped) {
		runErr = nil
	}
	return runErr
}

// authenticateFirst refuses a REST call without a known bearer token before
// the gateway parses its path, query or body (so a caller without a token
// learns nothing but 401), and bounds the body. Roles are checked by the
// gRPC interceptors as for any call.
func (s *Server) authenticateFirst(gw *runtime.ServeMux, eo apierr.Options) http.Handler {
	limit := s.o.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	render := apierr.HTTPErrorHandler(eo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.o.AdmitREST != nil {
			if err := s.o.AdmitREST(r); err != nil {
				_, out := runtime.MarshalerForRequest(gw, r)
				render(r.Context(), gw, out, w, r, err)
				return
			}
		}
		ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", r.Header.Get("Authorization")))
		if r.Header.Get("Authorization") == "" {
			ctx = metadata.NewIncomingContext(r.Context(), metadata.MD{})
		}
		if _, err := s.o.Auth.Authenticate(ctx); err != nil {
			if s.o.RefusedREST != nil {
				s.o.RefusedREST(r, err)
			}
			_, out := runtime.MarshalerForRequest(gw, r)
			render(r.Context(), gw, out, w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		gw.ServeHTTP(w, r)
	})
}

// untilDone ends each request's context when done ends, so that long-lived
// responses (the dashboard's event stream) let a shutdown finish.
func untilDone(done context.Context, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(done, cancel)
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
