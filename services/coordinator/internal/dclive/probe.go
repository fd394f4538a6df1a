package dclive

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/state"
)

// Defaults of ProberOptions.
const (
	DefaultProbeInterval = time.Second
	DefaultProbeTimeout  = 500 * time.Millisecond
)

// ProberOptions configure a Prober.
type ProberOptions struct {
	Store *state.Store
	// DC is the observer: the DC this coordinator runs in.
	DC string
	// NATS is this DC's NATS (nil: the link is not reported).
	NATS *nats.Conn
	// Lease is the process lease the views are written on.
	Lease func() clientv3.LeaseID
	// ID names the writer of the views.
	ID                string
	Interval, Timeout time.Duration
	Logger            zerolog.Logger
	Now               func() time.Time
}

// Prober writes this DC's view of every other DC: whether their masters
// answer a MySQL handshake from here and whether this DC's inbound stream
// still hears from theirs. Every coordinator runs one; the leader's Watcher
// reads the views.
type Prober struct {
	o  ProberOptions
	js jetstream.JetStream
}

// NewProber returns a prober.
func NewProber(o ProberOptions) (*Prober, error) {
	if o.Interval <= 0 {
		o.Interval = DefaultProbeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Prober{o: o}
	if o.NATS != nil {
		js, err := jetstream.New(o.NATS)
		if err != nil {
			return nil, err
		}
		p.js = js
	}
	return p, nil
}

// Run probes every interval until ctx ends.
func (p *Prober) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	for {
		if err := p.Once(ctx); err != nil && ctx.Err() == nil {
			p.o.Logger.Debug().Err(err).Msg("DC views not written")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once probes every other DC of the topology and writes the views.
func (p *Prober) Once(ctx context.Context) error {
	topo, _, err := p.o.Store.Topology(ctx)
	if err != nil {
		return err
	}
	links := p.links(ctx)
	var wg sync.WaitGroup
	views := make([]state.DCView, 0, len(topo.DCs))
	var mu sync.Mutex
	for _, dc := range topo.DCs {
		if dc.Name == p.o.DC {
			continue
		}
		wg.Go(func() {
			v := p.view(ctx, dc.Name, links)
			mu.Lock()
			views = append(views, v)
			mu.Unlock()
		})
	}
	wg.Wait()
	var lease clientv3.LeaseID
	if p.o.Lease != nil {
		lease = p.o.Lease()
	}
	for _, v := range views {
		if err := p.o.Store.PutDCView(ctx, v, lease); err != nil {
			return err
		}
	}
	return nil
}

// view probes the masters of target and reads its link.
func (p *Prober) view(ctx context.Context, target string, links map[string]*jetstream.StreamSourceInfo) state.DCView {
	v := state.DCView{Observer: p.o.DC, Target: target, By: p.o.ID}
	masters, _, err := state.List[state.MasterRecord](ctx, p.o.Store, p.o.Store.Prefix("masters", target))
	if err == nil {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, m := range masters {
			v.MastersProbed++
			wg.Go(func() {
				if Handshake(ctx, m.Addr, p.o.Timeout) {
					mu.Lock()
					v.MastersReachable++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if src, ok := links[embednats.OutStream(target)]; ok {
		v.LinkKnown = true
		v.LinkActiveAgo = state.Duration(src.Active)
		if src.Active < 0 {
			v.LinkActiveAgo = state.Duration(time.Duration(1 << 62))
		}
		if src.Error != nil {
			v.LinkError = src.Error.Description
		}
	}
	v.ObservedAt = p.o.Now().UTC()
	return v
}

// links returns the sources of this DC's inbound stream by name; nil
// without NATS or when the stream cannot be read.
func (p *Prober) links(ctx context.Context) map[string]*jetstream.StreamSourceInfo {
	if p.js == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	s, err := p.js.Stream(cctx, embednats.InStream(p.o.DC))
	if err != nil {
		return nil
	}
	info, err := s.Info(cctx)
	if err != nil {
		return nil
	}
	out := make(map[string]*jetstream.StreamSourceInfo, len(info.Sources))
	for _, src := range info.Sources {
		out[src.Name] = src
	}
	return out
}

// Handshake reports whether a MySQL server at addr sends its greeting
// within timeout: the server speaks first, so a byte read proves it is
// alive and reachable, without logging in.
func Handshake(ctx context.Context, addr string, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	var b [1]byte
	n, err := conn.Read(b[:])
	return err == nil && n == 1
}
