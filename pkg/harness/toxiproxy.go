package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/freeport"
)

// Toxic names used by Proxy.
const (
	toxicLatency       = "latency"
	toxicBlackholeUp   = "blackhole_upstream"
	toxicBlackholeDown = "blackhole_downstream"
	// proxyPortAttempts bounds how often Toxiproxy picks another port when the one it picked was taken
	// in the meantime.
	proxyPortAttempts = 4
)

// Proxy is an in-process toxiproxy TCP proxy in front of one upstream address. Its methods fail the test
// on error, so call them from the test's goroutine.
type Proxy struct {
	t      testing.TB
	proxy  *toxiproxy.Proxy
	listen string
}

// Toxiproxy starts a proxy named name on a free loopback port, forwarding to upstream (host:port). It is
// stopped in t.Cleanup.
func Toxiproxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	// Toxiproxy warns about every connection it closes; only its errors are worth reading.
	log := partLogger(t, zerolog.ErrorLevel)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), log)
	// The port is picked below the ephemeral range, so no outgoing connection takes it while the proxy
	// is cut and Restore can bind it again.
	for attempt := 1; ; attempt++ {
		ports, err := freeport.Pick(1)
		if err != nil {
			t.Fatalf("harness: toxiproxy %s: %v", name, err)
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		p := toxiproxy.NewProxy(srv, name, listen, upstream)
		err = p.Start()
		if err == nil {
			t.Cleanup(p.Stop)
			return &Proxy{t: t, proxy: p, listen: listen}
		}
		if !freeport.InUse(err) || attempt >= proxyPortAttempts {
			t.Fatalf("harness: toxiproxy %s: %v", name, err)
		}
	}
}

// Listen returns the proxy's address (127.0.0.1:port); dial it instead of the upstream.
func (p *Proxy) Listen() string { return p.listen }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.proxy.Upstream }

// Cut disables the proxy: open connections are closed and new dials are refused.
func (p *Proxy) Cut() {
	p.proxy.Stop()
}

// Restore enables a cut proxy again on the same address.
func (p *Proxy) Restore() {
	p.t.Helper()
	err := p.proxy.Start()
	if errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return
	}
	if err != nil {
		p.t.Fatalf("harness: toxiproxy %s restore: %v", p.proxy.Name, err)
	}
}

// AddLatency delays every chunk sent from the upstream back to the client by d, so each request/response
// round trip takes at least d longer. It replaces a latency added before.
func (p *Proxy) AddLatency(d time.Duration) {
	p.t.Helper()
	p.removeToxic(toxicLatency)
	p.addToxic(toxicLatency, "latency", "downstream", fmt.Sprintf(`{"latency": %d}`, d.Milliseconds()))
}

// Blackhole keeps connections open but drops all data in both directions (the timeout toxic with
// timeout 0), as a silent network partition does. RemoveToxics ends it.
func (p *Proxy) Blackhole() {
	p.t.Helper()
	p.removeToxic(toxicBlackholeUp)
	p.removeToxic(toxicBlackholeDown)
	p.addToxic(toxicBlackholeUp, "timeout", "upstream", `{"timeout": 0}`)
	p.addToxic(toxicBlackholeDown, "timeout", "downstream", `{"timeout": 0}`)
}

// RemoveToxics removes every toxic (latency, blackhole); connections carry data normally again.
func (p *Proxy) RemoveToxics() {
	p.proxy.Toxics.ResetToxics(context.Background())
}

func (p *Proxy) addToxic(name, typ, stream, attributes string) {
	p.t.Helper()
	body := fmt.Sprintf(`{"name": %q, "type": %q, "stream": %q, "toxicity": 1, "attributes": %s}`,
		name, typ, stream, attributes)
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		p.t.Fatalf("harness: toxiproxy %s: add %s: %v", p.proxy.Name, name, err)
	}
}

func (p *Proxy) removeToxic(name string) {
	p.t.Helper()
	err := p.proxy.Toxics.RemoveToxic(context.Background(), name)
	if err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
		p.t.Fatalf("harness: toxiproxy %s: remove %s: %v", p.proxy.Name, name, err)
	}
}
