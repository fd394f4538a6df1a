package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/freeport"
)

// Client settings: a stopped or paused member must not leave calls hanging.
const (
	clientDialTimeout      = 2 * time.Second
	clientKeepAliveTime    = 2 * time.Second
	clientKeepAliveTimeout = 2 * time.Second
)

// Options configures a Cluster.
type Options struct {
	// Dir holds one data directory per member (Dir/<name>). Required; the member directories must not hold
	// data yet: a new cluster gets new ports, which an old member's membership would not match.
	Dir string
	// Members is the number of members, named m0, m1, …; used when Names is empty (default 1).
	Members int
	// Names names the members explicitly (for instance one per DC).
	Names []string
	// Token is the initial cluster token (default DefaultToken).
	Token string
	// TickMs and ElectionMs are the raft heartbeat and election timeout (defaults 50 and 500).
	TickMs     uint
	ElectionMs uint
	// Logger receives this package's events and, with Debug, the embedded servers' and clients' logs.
	Logger zerolog.Logger
	// Debug forwards the embedded servers' and clients' logs to Logger; otherwise they are dropped.
	Debug bool
}

func (o Options) names() ([]string, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrOptions)
	}
	if len(o.Names) > 0 {
		seen := make(map[string]bool, len(o.Names))
		for _, n := range o.Names {
			if n == "" || seen[n] {
				return nil, fmt.Errorf("%w: member names must be unique and non-empty: %q", ErrOptions, o.Names)
			}
			seen[n] = true
		}
		return o.Names, nil
	}
	n := o.Members
	if n == 0 {
		n = 1
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: Members %d", ErrOptions, n)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	return names, nil
}

// Cluster is a set of etcd members running in this process.
type Cluster struct {
	opts    Options
	members []*Member

	mu      sync.Mutex
	clients []*clientv3.Client
}

// Start starts the cluster's members on free loopback ports and waits, within ctx, until every member
// serves client requests. A start that loses a port race is retried with new ports.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	names, err := opts.names()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(opts.Dir, n, "member")); err == nil {
			return nil, fmt.Errorf("%w: %s already holds etcd data", ErrOptions, filepath.Join(opts.Dir, n))
		}
	}
	c := &Cluster{opts: opts}
	err = freeport.Retry(2*len(names), func(ports []int) error {
		return c.startMembers(peersOn(names, ports))
	})
	if err != nil {
		return nil, err
	}
	for _, m := range c.members {
		if err := m.WaitReady(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// startMembers starts one member per name on freshly picked ports. On failure it stops what it started
// and removes those members' data, so that a retry starts clean.
func (c *Cluster) startMembers(peers []Peer) error {
	c.members = c.members[:0]
	for _, p := range peers {
		m, err := StartMember(MemberOptions{
			Dir:        filepath.Join(c.opts.Dir, p.Name),
			Name:       p.Name,
			Peers:      peers,
			Token:      c.opts.Token,
			TickMs:     c.opts.TickMs,
			ElectionMs: c.opts.ElectionMs,
			Logger:     c.opts.Logger.With().Str("etcd_member", p.Name).Logger(),
			Debug:      c.opts.Debug,
		})
		if err != nil {
			for _, started := range c.members {
				started.Stop()
				started.Close() // after Stop it only waits for the teardown
			}
			var rmErr error
			for _, p := range peers {
				rmErr = errors.Join(rmErr, os.RemoveAll(filepath.Join(c.opts.Dir, p.Name)))
			}
			c.members = c.members[:0]
			return errors.Join(err, rmErr)
		}
		c.members = append(c.members, m)
	}
	return nil
}

// Endpoints returns every member's client URL, stopped members included, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL()
	}
	return eps
}

// Members returns the members in order.
func (c *Cluster) Members() []*Member { return c.members }

// Member returns member i.
func (c *Cluster) Member(i int) (*Member, error) {
	if i < 0 || i >= len(c.members) {
		return nil, fmt.Errorf("%w: %d of %d", ErrNoMember, i, len(c.members))
	}
	return c.members[i], nil
}

// Client returns a client for all endpoints once one member answers, within ctx. The cluster closes it in
// Close; callers may close it earlier.
func (c *Cluster) Client(ctx context.Context) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints(),
		DialTimeout:          clientDialTimeout,
		DialKeepAliveTime:    clientKeepAliveTime,
		DialKeepAliveTimeout: clientKeepAliveTimeout,
		Logger:               zapLogger(c.opts.Logger, c.opts.Debug),
	})
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client: %w", err)
	}
	if err := waitAnswer(ctx, cli); err != nil {
		_ = cli.Close()
		return nil, err
	}
	c.mu.Lock()
	c.clients = append(c.clients, cli)
	c.mu.Unlock()
	return cli, nil
}

// waitAnswer polls the endpoints until one reports its status.
func waitAnswer(ctx context.Context, cli *clientv3.Client) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, ep := range cli.Endpoints() {
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := cli.Status(sctx, ep)
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no member answered: %w", ErrNotReady, ctx.Err())
		case <-tick.C:
		}
	}
}

// StopMember stops member i abruptly (see Member.Stop), as for quorum-loss tests.
func (c *Cluster) StopMember(i int) error {
	m, err := c.Member(i)
	if err != nil {
		return err
	}
	m.Stop()
	return nil
}

// RestartMember starts a stopped member again on its old ports and data, and waits within ctx until it
// serves client requests, which needs a quorum of running members.
func (c *Cluster) RestartMember(ctx context.Context, i int) error {
	m, err := c.Member(i)
	if err != nil {
		return err
	}
	if err := m.Start(); err != nil {
		return err
	}
	return m.WaitReady(ctx)
}

// Close closes the clients Client handed out, then stops every member abruptly (no leadership hand-over,
// which would wait on members that are closing at the same time) and waits until they are gone.
func (c *Cluster) Close() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cli := range clients {
		_ = cli.Close()
	}
	for _, m := range c.members {
		m.Stop()
	}
	for _, m := range c.members {
		m.Close()
	}
}
