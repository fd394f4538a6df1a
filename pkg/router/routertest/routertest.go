// Package routertest serves routing tables over a real gRPC ShardService
// (WatchRoutes) and TopologyService (GetTopology) on a loopback port, for
// tests of code that uses pkg/router without a coordinator. The test
// decides the tables (Set), breaks streams (Break) and restarts the server
// (Restart); the server stops when the test ends.
package routertest

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Options configure Start.
type Options struct {
	// Token, when set, is the bearer token every call must carry
	// ("authorization: Bearer <token>"); others get UNAUTHENTICATED.
	Token string
}

// Server is the fake coordinator.
type Server struct {
	t    testing.TB
	o    Options
	addr string

	mu       sync.Mutex
	srv      *grpc.Server
	tables   map[string]*drplanev1.RoutingTable
	watchers map[*watcher]struct{}

	streams atomic.Int64
}

// watcher is one open WatchRoutes stream.
type watcher struct {
	keyspaces map[string]bool // nil: all
	// pending holds the latest table per keyspace not sent yet; guarded by
	// Server.mu.
	pending map[string]*drplanev1.RoutingTable
	notify  chan struct{}
	broken  chan struct{}
}

func (w *watcher) wants(ks string) bool { return w.keyspaces == nil || w.keyspaces[ks] }

// Start serves on a free loopback port until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, o: o, tables: map[string]*drplanev1.RoutingTable{}, watchers: map[*watcher]struct{}{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("routertest: listen: %v", err)
	}
	s.addr = lis.Addr().String()
	s.serve(lis)
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Dial returns a plaintext client connection to the server, closed when the
// test ends.
func (s *Server) Dial(opts ...grpc.DialOption) *grpc.ClientConn {
	s.t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		s.t.Fatalf("routertest: dial: %v", err)
	}
	s.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (s *Server) serve(lis net.Listener) {
	srv := grpc.NewServer()
	drplanev1.RegisterShardServiceServer(srv, shardService{s: s})
	drplanev1.RegisterTopologyServiceServer(srv, topologyService{s: s})
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// Stop stops the server, ending every stream and connection.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart stops the server and serves again on the same address, with the
// same tables.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("routertest: listen again on %s: %v", s.addr, err)
	}
	s.serve(lis)
}

// Set publishes tables (a copy of each): they replace the keyspaces' current
// tables and are sent to every stream watching them.
func (s *Server) Set(tables ...*drplanev1.RoutingTable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tables {
		c := proto.Clone(t).(*drplanev1.RoutingTable)
		s.tables[c.GetKeyspace()] = c
		for w := range s.watchers {
			if w.wants(c.GetKeyspace()) {
				w.pending[c.GetKeyspace()] = c
				select {
				case w.notify <- struct{}{}:
				default:
				}
			}
		}
	}
}

// Table returns a copy of the keyspace's current table, nil if none.
func (s *Server) Table(keyspace string) *drplanev1.RoutingTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[keyspace]; ok {
		return proto.Clone(t).(*drplanev1.RoutingTable)
	}
	return nil
}

// Break ends every open WatchRoutes stream with UNAVAILABLE; the
// connections stay up.
func (s *Server) Break() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		close(w.broken)
		delete(s.watchers, w)
	}
}

// Streams returns how many WatchRoutes calls the server accepted.
func (s *Server) Streams() int64 { return s.streams.Load() }

// Watchers returns how many WatchRoutes streams are open.
func (s *Server) Watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

func (s *Server) authorize(ctx context.Context) error {
	if s.o.Token == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if v == "Bearer "+s.o.Token {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "routertest: missing or wrong bearer token")
}

type shardService struct {
	drplanev1.UnimplementedShardServiceServer
	s *Server
}

// WatchRoutes sends the current table of each watched keyspace, then every
// table Set publishes, the latest per keyspace when they come faster than
// the client reads.
func (h shardService) WatchRoutes(req *drplanev1.WatchRoutesRequest, stream grpc.ServerStreamingServer[drplanev1.WatchRoutesResponse]) error {
	s := h.s
	if err := s.authorize(stream.Context()); err != nil {
		return err
	}
	s.streams.Add(1)
	w := &watcher{
		pending: map[string]*drplanev1.RoutingTable{},
		notify:  make(chan struct{}, 1),
		broken:  make(chan struct{}),
	}
	if len(req.GetKeyspaces()) > 0 {
		w.keyspaces = map[string]bool{}
		for _, ks := range req.GetKeyspaces() {
			w.keyspaces[ks] = true
		}
	}
	s.mu.Lock()
	for ks, t := range s.tables {
		if w.wants(ks) {
			w.pending[ks] = t
		}
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		batch := w.pending
		w.pending = map[string]*drplanev1.RoutingTable{}
		s.mu.Unlock()
		for _, t := range batch {
			if err := stream.Send(&drplanev1.WatchRoutesResponse{Table: t}); err != nil {
				return err
			}
		}
		select {
		case <-w.notify:
		case <-w.broken:
			return status.Error(codes.Unavailable, "routertest: stream broken")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

type topologyService struct {
	drplanev1.UnimplementedTopologyServiceServer
	s *Server
}

// GetTopology names the keyspaces that have a table; nothing else.
func (h topologyService) GetTopology(ctx context.Context, _ *drplanev1.GetTopologyRequest) (*drplanev1.GetTopologyResponse, error) {
	s := h.s
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	topo := &drplanev1.Topology{}
	for ks, t := range s.tables {
		topo.Keyspaces = append(topo.Keyspaces, &drplanev1.Keyspace{Name: ks, Shards: int32(len(t.GetShards()))})
	}
	return &drplanev1.GetTopologyResponse{Topology: topo}, nil
}

// HashTable returns a HASH routing table of n equal shards of cluster, all
// ACTIVE, owned by dcs in turn, each backed up by the next DC of dcs, at
// map revision rev, with no masters.
func HashTable(keyspace, cluster string, n int, rev int64, dcs ...string) *drplanev1.RoutingTable {
	lo, hi := shardmap.EqualRanges(n)
	t := &drplanev1.RoutingTable{Keyspace: keyspace, Function: string(shardmap.Hash), Cluster: cluster, MapRevision: rev}
	for i := range n {
		sh := &drplanev1.Shard{
			Id: int32(i), Lo: strconv.FormatUint(lo[i], 10), Hi: strconv.FormatUint(hi[i], 10),
			State: drplanev1.ShardState_SHARD_STATE_ACTIVE, Revision: rev,
		}
		if len(dcs) > 0 {
			sh.OwnerDc = dcs[i%len(dcs)]
			if len(dcs) > 1 {
				sh.BackupDc = dcs[(i+1)%len(dcs)]
			}
		}
		t.Shards = append(t.Shards, sh)
	}
	return t
}

// SetMaster sets (or, with an empty addr, removes) dc's master in t and
// returns t.
func SetMaster(t *drplanev1.RoutingTable, dc, instance, addr string, term int64) *drplanev1.RoutingTable {
	out := t.Masters[:0]
	for _, m := range t.GetMasters() {
		if m.GetDc() != dc {
			out = append(out, m)
		}
	}
	t.Masters = out
	if addr != "" {
		t.Masters = append(t.Masters, &drplanev1.MasterEndpoint{Dc: dc, Cluster: t.GetCluster(), Instance: instance, Addr: addr, Term: term})
	}
	return t
}
