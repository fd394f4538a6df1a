package auditlog

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// ActionUnauthenticated is the audit action of a call refused for missing
// or unknown credentials.
const ActionUnauthenticated = "api.unauthenticated"

// ActorAnonymous is the actor of a call that presented no token.
const ActorAnonymous = "anonymous"

// Rate limit defaults of UnauthenticatedOptions.
const (
	DefaultUnauthRate  = 5.0
	DefaultUnauthBurst = 20
)

// unauthWriteTimeout bounds one outbox write.
const unauthWriteTimeout = 5 * time.Second

// tokenHashPrefix is how many hex digits of a presented token's SHA-256 the
// actor shows: enough to tell tokens apart, never the token.
const tokenHashPrefix = 12

// UnauthenticatedOptions configure the auditing of unauthenticated calls.
type UnauthenticatedOptions struct {
	// Store is the etcd state store holding the outbox.
	Store *state.Store
	// Source names this coordinator in event ids (its id).
	Source string
	// Rate (events per second, default 5) and Burst (default 20) bound the
	// events written; the others are counted as dropped.
	Rate  float64
	Burst int
	// Registerer receives drplane_coordinator_audit_dropped_total; nil
	// registers nothing.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Unauthenticated audits API calls refused as UNAUTHENTICATED, through a
// token bucket so that a flood of anonymous calls cannot fill etcd. Its
// interceptors go before authentication (server.Options.PreAuth and
// PreAuthStream).
type Unauthenticated struct {
	o       UnauthenticatedOptions
	outbox  *audit.Outbox
	bucket  *bucket
	seq     atomic.Uint64
	dropped prometheus.Counter
	// pending counts events dropped since the last one written; the next
	// event written carries it.
	pending atomic.Int64
}

// NewUnauthenticated returns the auditor.
func NewUnauthenticated(o UnauthenticatedOptions) *Unauthenticated {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rate <= 0 {
		o.Rate = DefaultUnauthRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultUnauthBurst
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	u := &Unauthenticated{
		o: o, outbox: audit.NewOutbox(o.Store), bucket: newBucket(o.Rate, o.Burst, o.Now),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_coordinator_audit_dropped_total",
			Help: "Audit events of unauthenticated calls not written because of the rate limit.",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(u.dropped)
	}
	return u
}

// Unary is the unary server interceptor.
func (u *Unauthenticated) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) {
			u.record(ctx, info.FullMethod, err)
		}
		return resp, err
	}
}

// Stream is the stream server interceptor.
func (u *Unauthenticated) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) {
			u.record(ss.Context(), info.FullMethod, err)
		}
		return err
	}
}

// maxRESTTarget bounds the audited method and path of a refused REST call
// (the path is the caller's).
const maxRESTTarget = 256

// REST audits a REST call the server refused as UNAUTHENTICATED before
// the gateway routed it (server.Options.RefusedREST): the target is
// "REST <method> <path>", the peer the client's address.
func (u *Unauthenticated) REST(r *http.Request, err error) {
	md := metadata.MD{}
	if h := r.Header.Get("Authorization"); h != "" {
		md.Set("authorization", h)
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	if addr, perr := net.ResolveTCPAddr("tcp", r.RemoteAddr); perr == nil {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr})
	}
	target := "REST " + r.Method + " " + r.URL.EscapedPath()
	if len(target) > maxRESTTarget {
		target = target[:maxRESTTarget]
	}
	u.record(ctx, target, err)
}

// record writes the event of a refused call, if the rate limit allows.
func (u *Unauthenticated) record(ctx context.Context, method string, err error) {
	if !u.bucket.take() {
		u.dropped.Inc()
		u.pending.Add(1)
		return
	}
	now := u.o.Now()
	ev := audit.Event{
		ID: audit.NewID(now, u.o.Source+"/unauthenticated", u.seq.Add(1)), Time: now.UTC(),
		Actor: actorOf(ctx), Action: ActionUnauthenticated, Target: method,
		Params: map[string]string{}, Outcome: audit.OutcomeDenied, Error: refusal(err),
	}
	if p := peerOf(ctx); p != "" {
		ev.Params["peer"] = p
	}
	if n := u.pending.Swap(0); n > 0 {
		ev.Params["dropped_before"] = strconv.FormatInt(n, 10)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unauthWriteTimeout)
	defer cancel()
	if perr := u.outbox.Put(wctx, ev); perr != nil {
		u.o.Logger.Error().Err(perr).Str("action", ev.Action).Str("target", ev.Target).Str("actor", ev.Actor).
			Msg("audit event not written")
	}
}

// actorOf names the caller of a refused call: anonymous without an
// Authorization header, else a prefix of the SHA-256 of what it presented.
func actorOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 || vals[0] == "" {
		return ActorAnonymous
	}
	tok := vals[0]
	if t, ok := strings.CutPrefix(tok, "Bearer "); ok {
		tok = t
	}
	return "token-sha256:" + auth.Hash(tok)[:tokenHashPrefix]
}

// peerOf is the caller's address: the gRPC peer. x-forwarded-for is
// metadata any gRPC caller can set, so it counts only when the peer is the
// coordinator's own in-memory gateway, and then only its last entry (the
// address the gateway saw; entries before it are the client's word).
func peerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if p.Addr.Network() == "bufconn" {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("x-forwarded-for"); len(v) > 0 {
			last := strings.TrimSpace(v[len(v)-1][strings.LastIndexByte(v[len(v)-1], ',')+1:])
			if last != "" {
				return last
			}
		}
	}
	return p.Addr.String()
}

// refusal is the audited form of an UNAUTHENTICATED error.
func refusal(err error) string {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	if e, ok := apierr.FromError(err); ok {
		return apierr.Reason(e.Code) + ": " + e.Message
	}
	return err.Error()
}

// bucket is a token bucket: rate tokens a second, at most burst.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newBucket(rate float64, burst int, now func() time.Time) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// take removes a token if there is one.
func (b *bucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
