// Package guard bounds what one caller of the control API can cost the
// coordinator: it names the caller (its token, else its address, taking
// x-forwarded-for only from trusted proxies), throttles a caller whose calls
// keep being refused, and bounds the watch streams a caller holds open.
package guard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// maxForwardedHops is how many x-forwarded-for entries, from the right, are
// looked at: a longer chain is the client's word anyway.
const maxForwardedHops = 8

// Caller is who made a call, as far as the coordinator can tell.
type Caller struct {
	// ID is what limits are kept by: "token:<name>" for a known token,
	// else "peer:<address>" (an IPv6 address by its /64).
	ID string
	// Peer is the caller's address as audited: the TCP peer, or the client
	// a trusted proxy forwarded for.
	Peer string
}

// Proxies are the addresses whose x-forwarded-for is believed.
type Proxies []netip.Prefix

// ParseProxies parses CIDR prefixes or single addresses.
func ParseProxies(list []string) (Proxies, error) {
	out := make(Proxies, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func (ps Proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client walks a forwarded-for chain from the right, past trusted proxies,
// and returns the first address that is not one (the leftmost address when
// every hop is trusted); ok is false when the chain holds no address.
func (ps Proxies) client(chain []string) (netip.Addr, bool) {
	var hops []string
	for _, v := range chain {
		hops = append(hops, strings.Split(v, ",")...)
	}
	var last netip.Addr
	found := false
	for i := len(hops) - 1; i >= 0 && i >= len(hops)-maxForwardedHops; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		last, found = a.Unmap(), true
		if !ps.trusted(last) {
			return last, true
		}
	}
	return last, found
}

// addrOf parses "host:port" or a bare address.
func addrOf(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// Resolver names callers.
type Resolver struct {
	// Auth recognizes known tokens; nil names every caller by address.
	Auth *auth.Authenticator
	// Proxies are the trusted proxies.
	Proxies Proxies
}

// PeerOf is the caller's address. The TCP peer, unless it is a trusted
// proxy, or the coordinator's own in-process gateway (a "bufconn" peer,
// whose x-forwarded-for ends with the address of the REST client it
// served): then the x-forwarded-for chain is walked from the right past
// trusted proxies. Anything a caller writes left of a hop it does not
// control is never believed.
func (r Resolver) PeerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	gateway := p.Addr.Network() == "bufconn"
	if !gateway {
		a, ok := addrOf(p.Addr.String())
		if !ok || !r.Proxies.trusted(a) {
			return p.Addr.String()
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if a, ok := r.Proxies.client(md.Get("x-forwarded-for")); ok {
		return a.String()
	}
	return p.Addr.String()
}

// PeerOfHTTP is the address of a REST client, by the same rule.
func (r Resolver) PeerOfHTTP(req *http.Request) string {
	a, ok := addrOf(req.RemoteAddr)
	if !ok || !r.Proxies.trusted(a) {
		return req.RemoteAddr
	}
	if c, ok := r.Proxies.client(req.Header.Values("X-Forwarded-For")); ok {
		return c.String()
	}
	return req.RemoteAddr
}

// Of names the caller of a gRPC call.
func (r Resolver) Of(ctx context.Context) Caller {
	return r.caller(ctx, r.PeerOf(ctx))
}

// OfHTTP names the caller of a REST call.
func (r Resolver) OfHTTP(req *http.Request) Caller {
	md := metadata.MD{}
	if h := req.Header.Get("Authorization"); h != "" {
		md.Set("authorization", h)
	}
	return r.caller(metadata.NewIncomingContext(req.Context(), md), r.PeerOfHTTP(req))
}

func (r Resolver) caller(ctx context.Context, peerAddr string) Caller {
	if r.Auth != nil {
		if p, err := r.Auth.Authenticate(ctx); err == nil {
			return Caller{ID: "token:" + p.Name, Peer: peerAddr}
		}
	}
	return Caller{ID: "peer:" + HostKey(peerAddr), Peer: peerAddr}
}

// HostKey is the address part of peerAddr ("host:port" or an address), an
// IPv6 address cut to its /64 (one host usually holds a whole /64).
func HostKey(peerAddr string) string {
	a, ok := addrOf(peerAddr)
	if !ok {
		if h, _, err := net.SplitHostPort(peerAddr); err == nil {
			return h
		}
		return peerAddr
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
