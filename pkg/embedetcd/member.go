package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/freeport"
)

// Sentinel errors; returned errors wrap one of them or freeport.ErrNoPorts.
var (
	ErrOptions  = errors.New("embedetcd: invalid options")
	ErrStart    = errors.New("embedetcd: member failed to start")
	ErrNotReady = errors.New("embedetcd: member not ready")
	ErrStopped  = errors.New("embedetcd: member stopped")
	ErrNoMember = errors.New("embedetcd: no such member")
)

// Defaults for the raft timers: fast enough for tests and a loopback lab.
const (
	DefaultTickMs     = 50
	DefaultElectionMs = 500
	DefaultToken      = "drplane-etcd"
)

// Peer is one member's name and the URLs it serves.
type Peer struct {
	Name      string
	ClientURL string // http://127.0.0.1:P, what clients dial
	PeerURL   string // http://127.0.0.1:P, what other members dial
}

// PickPeers gives every name a free loopback client port and peer port. The ports were free when probed;
// a member that then fails to bind reports an error for which freeport.InUse is true.
func PickPeers(names []string) ([]Peer, error) {
	ports, err := freeport.Pick(2 * len(names))
	if err != nil {
		return nil, err
	}
	return peersOn(names, ports), nil
}

// peersOn gives name i the client port ports[2i] and the peer port ports[2i+1].
func peersOn(names []string, ports []int) []Peer {
	peers := make([]Peer, len(names))
	for i, n := range names {
		peers[i] = Peer{
			Name:      n,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
	}
	return peers
}

// MemberOptions configures one member.
type MemberOptions struct {
	// Dir is the member's data directory; it is created if missing. Required.
	Dir string
	// Name is this member's name and must appear in Peers.
	Name string
	// Peers is the whole initial cluster, this member included.
	Peers []Peer
	// Token is the initial cluster token shared by all members (default DefaultToken).
	Token string
	// TickMs and ElectionMs are the raft heartbeat and election timeout (defaults 50 and 500).
	TickMs     uint
	ElectionMs uint
	// Logger receives this package's own events and, with Debug, the embedded server's logs.
	Logger zerolog.Logger
	// Debug forwards the embedded server's logs to Logger; otherwise they are dropped.
	Debug bool
}

func (o *MemberOptions) setDefaults() error {
	if o.Dir == "" {
		return fmt.Errorf("%w: Dir is required", ErrOptions)
	}
	if o.Token == "" {
		o.Token = DefaultToken
	}
	if o.TickMs == 0 {
		o.TickMs = DefaultTickMs
	}
	if o.ElectionMs == 0 {
		o.ElectionMs = DefaultElectionMs
	}
	if o.ElectionMs < 5*o.TickMs {
		return fmt.Errorf("%w: ElectionMs %d must be at least 5×TickMs %d", ErrOptions, o.ElectionMs, o.TickMs)
	}
	if !slices.ContainsFunc(o.Peers, func(p Peer) bool { return p.Name == o.Name }) {
		return fmt.Errorf("%w: member %q is not among Peers", ErrOptions, o.Name)
	}
	return nil
}

// Member is one etcd server running in this process.
type Member struct {
	opts MemberOptions
	self Peer
	cfg  *embed.Config

	mu   sync.Mutex
	etcd *embed.Etcd // nil while stopped
	// teardown is closed when the previous run's listeners and goroutines are gone (Stop finishes that
	// part in the background).
	teardown chan struct{}

	// grpc holds the client-facing gRPC servers of the current run. embed registers them from its own
	// goroutines, hence a lock of their own.
	grpcMu sync.Mutex
	grpc   []*grpc.Server
}

// StartMember starts a member and returns without waiting for it to join a quorum; see WaitReady.
func StartMember(opts MemberOptions) (*Member, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m := &Member{opts: opts}
	for _, p := range opts.Peers {
		if p.Name == opts.Name {
			m.self = p
		}
	}
	cfg, err := m.config()
	if err != nil {
		return nil, err
	}
	m.cfg = cfg
	if err := m.Start(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Member) config() (*embed.Config, error) {
	if err := os.MkdirAll(m.opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	cu, err := url.Parse(m.self.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("%w: client URL: %w", ErrOptions, err)
	}
	pu, err := url.Parse(m.self.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: peer URL: %w", ErrOptions, err)
	}
	initial := make([]string, len(m.opts.Peers))
	for i, p := range m.opts.Peers {
		initial[i] = p.Name + "=" + p.PeerURL
	}
	cfg := embed.NewConfig()
	cfg.Name = m.self.Name
	cfg.Dir = m.opts.Dir
	cfg.TickMs = m.opts.TickMs
	cfg.ElectionMs = m.opts.ElectionMs
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.InitialClusterToken = m.opts.Token
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLogger(m.opts.Logger, m.opts.Debug))
	// Keep hold of the client gRPC servers so that Stop can drop client connections at once instead of
	// waiting for open streams to drain.
	cfg.ServiceRegister = func(s *grpc.Server) {
		m.grpcMu.Lock()
		m.grpc = append(m.grpc, s)
		m.grpcMu.Unlock()
	}
	return cfg, nil
}

// Name returns the member's name.
func (m *Member) Name() string { return m.self.Name }

// ClientURL returns the URL clients dial.
func (m *Member) ClientURL() string { return m.self.ClientURL }

// PeerURL returns the URL other members dial.
func (m *Member) PeerURL() string { return m.self.PeerURL }

// Running reports whether the member has been started and not stopped since.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// Start starts a stopped member again with the same data directory and URLs. It does not wait for
// readiness. Starting a running member is a no-op.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		return nil
	}
	m.waitTeardown()
	m.takeGRPC()
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStart, m.self.Name, err)
	}
	m.etcd = e
	return nil
}

// WaitReady waits until the member serves client requests, which needs a quorum of the cluster.
func (m *Member) WaitReady(ctx context.Context) error {
	m.mu.Lock()
	e := m.etcd
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("%w: %s", ErrStopped, m.self.Name)
	}
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-e.Server.StopNotify():
		return fmt.Errorf("%w: %s stopped before it was ready", ErrStopped, m.self.Name)
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrNotReady, m.self.Name, ctx.Err())
	}
}

// Stop halts the member abruptly, as a crash would: client connections are dropped and raft stops without
// handing leadership over; when Stop returns the member neither answers clients nor takes part in raft.
// Its listeners finish closing in the background (up to a second); Start and Close wait for that. The
// data directory is kept; Start resumes it.
func (m *Member) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return
	}
	for _, s := range m.takeGRPC() {
		s.Stop()
	}
	e := m.etcd
	e.Server.HardStop()
	m.etcd = nil
	done := make(chan struct{})
	m.teardown = done
	go func() {
		defer close(done)
		e.Close()
	}()
}

func (m *Member) waitTeardown() {
	if m.teardown != nil {
		<-m.teardown
		m.teardown = nil
	}
}

func (m *Member) takeGRPC() []*grpc.Server {
	m.grpcMu.Lock()
	defer m.grpcMu.Unlock()
	s := m.grpc
	m.grpc = nil
	return s
}

// Close stops the member gracefully (a leader hands leadership over first) and returns once it is gone.
// Close clients connected to the member before calling it, or it waits for their streams up to the request
// timeout.
func (m *Member) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
		m.takeGRPC()
	}
	m.waitTeardown()
}

// Run serves until ctx ends (nil) or the member fails (the error); the member is closed when Run returns.
func (m *Member) Run(ctx context.Context) error {
	defer m.Close()
	m.mu.Lock()
	e := m.etcd
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("%w: %s", ErrStopped, m.self.Name)
	}
	select {
	case <-ctx.Done():
		return nil
	case err, ok := <-e.Err():
		if !ok {
			return fmt.Errorf("%w: %s", ErrStopped, m.self.Name)
		}
		return fmt.Errorf("%w: %s: %w", ErrStopped, m.self.Name, err)
	case <-e.Server.StopNotify():
		return fmt.Errorf("%w: %s: server stopped", ErrStopped, m.self.Name)
	}
}
