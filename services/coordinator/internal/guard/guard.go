package guard

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Defaults of Options.
const (
	DefaultRefusedRate   = 1.0
	DefaultRefusedBurst  = 30
	DefaultMaxWatches    = 16
	DefaultMaxIdentities = 4096
)

// RetryAfterKey is the ErrorInfo metadata key of a RESOURCE_EXHAUSTED
// answer: how many milliseconds to wait before calling again.
const RetryAfterKey = "retry_after_ms"

// overflowID is the identity that callers share once MaxIdentities
// anonymous identities are tracked.
const overflowID = "peer:*"

// Options configure a Guard.
type Options struct {
	Resolver Resolver
	// RefusedRate (calls per second, default 1) and RefusedBurst (default
	// 30) bound the refused calls (UNAUTHENTICATED, PERMISSION_DENIED) of
	// one identity: once the burst is spent, every call of that identity is
	// answered RESOURCE_EXHAUSTED, without being looked at, until the
	// bucket refills.
	RefusedRate  float64
	RefusedBurst int
	// MaxWatches bounds the open streams of one identity on the methods in
	// Watches (default 16).
	MaxWatches int
	Watches    []string
	// MaxIdentities bounds the anonymous identities tracked (default
	// 4096); beyond it they share one bucket. Known tokens always have
	// their own.
	MaxIdentities int
	// Throttled, when non-nil, is told of every call answered
	// RESOURCE_EXHAUSTED (e.g. to audit it, aggregated).
	Throttled  func(ctx context.Context, c Caller, target string, err error)
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Guard is the first interceptor of the API: it throttles identities whose
// calls are refused and bounds their watch streams.
type Guard struct {
	o       Options
	watches map[string]bool

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	open    map[string]int

	throttled *prometheus.CounterVec
}

// New returns a guard.
func New(o Options) *Guard {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefusedRate <= 0 {
		o.RefusedRate = DefaultRefusedRate
	}
	if o.RefusedBurst <= 0 {
		o.RefusedBurst = DefaultRefusedBurst
	}
	if o.MaxWatches <= 0 {
		o.MaxWatches = DefaultMaxWatches
	}
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = DefaultMaxIdentities
	}
	g := &Guard{
		o: o, watches: map[string]bool{}, buckets: map[string]*rate.Limiter{}, open: map[string]int{},
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_coordinator_api_throttled_total",
			Help: "API calls answered RESOURCE_EXHAUSTED, by reason (refused: too many refused calls; watches: too many open watch streams).",
		}, []string{"reason"}),
	}
	for _, m := range o.Watches {
		g.watches[m] = true
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(g.throttled)
	}
	return g
}

// refused reports whether err is a refusal that counts against the caller.
func refused(err error) bool {
	return err != nil && (apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) ||
		apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED))
}

// bucket returns the refusal bucket of id, creating it.
func (g *Guard) bucket(id string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.buckets[id]; ok {
		return b
	}
	if len(g.buckets) >= g.o.MaxIdentities && !isToken(id) {
		g.evictLocked()
		if len(g.buckets) >= g.o.MaxIdentities {
			id = overflowID
			if b, ok := g.buckets[id]; ok {
				return b
			}
		}
	}
	b := rate.NewLimiter(rate.Limit(g.o.RefusedRate), g.o.RefusedBurst)
	g.buckets[id] = b
	return b
}

// evictLocked forgets the buckets that have refilled: they hold nothing a
// fresh bucket would not.
func (g *Guard) evictLocked() {
	now := g.o.Now()
	for id, b := range g.buckets {
		if b.TokensAt(now) >= float64(g.o.RefusedBurst) {
			delete(g.buckets, id)
		}
	}
}

func isToken(id string) bool { return len(id) > 6 && id[:6] == "token:" }

// admit answers RESOURCE_EXHAUSTED when c's refusal bucket is spent.
func (g *Guard) admit(c Caller) error {
	now := g.o.Now()
	b := g.bucket(c.ID)
	tok := b.TokensAt(now)
	if tok >= 1 {
		return nil
	}
	wait := time.Duration((1 - tok) / g.o.RefusedRate * float64(time.Second))
	g.throttled.WithLabelValues("refused").Inc()
	return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED,
		"too many refused calls from %s; retry in %s", c.ID, wait.Round(time.Millisecond)).
		WithMetadata(RetryAfterKey, strconv.FormatInt(max(wait.Milliseconds(), 1), 10))
}

// charge spends one token of c's refusal bucket.
func (g *Guard) charge(c Caller) {
	g.bucket(c.ID).AllowN(g.o.Now(), 1)
}

// Unary is the unary server interceptor; chain it first after the error
// mapping.
func (g *Guard) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		c := g.o.Resolver.Of(ctx)
		if err := g.admit(c); err != nil {
			g.report(ctx, c, info.FullMethod, err)
			return nil, err
		}
		resp, err := h(ctx, req)
		if refused(err) {
			g.charge(c)
		}
		return resp, err
	}
}

// Stream is the stream server interceptor; chain it first after the error
// mapping.
func (g *Guard) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx := ss.Context()
		c := g.o.Resolver.Of(ctx)
		if err := g.admit(c); err != nil {
			g.report(ctx, c, info.FullMethod, err)
			return err
		}
		if g.watches[info.FullMethod] {
			if err := g.openWatch(c); err != nil {
				g.report(ctx, c, info.FullMethod, err)
				return err
			}
			defer g.closeWatch(c)
		}
		err := h(srv, ss)
		if refused(err) {
			g.charge(c)
		}
		return err
	}
}

// openWatch counts an open watch stream of c, refusing one beyond
// MaxWatches.
func (g *Guard) openWatch(c Caller) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[c.ID] >= g.o.MaxWatches {
		g.throttled.WithLabelValues("watches").Inc()
		return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED,
			"%s already holds %d open watch streams (the limit); close one first", c.ID, g.o.MaxWatches).
			WithMetadata(RetryAfterKey, "1000")
	}
	g.open[c.ID]++
	return nil
}

func (g *Guard) closeWatch(c Caller) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[c.ID]--; g.open[c.ID] <= 0 {
		delete(g.open, c.ID)
	}
}

// Watching returns how many watch streams id holds open.
func (g *Guard) Watching(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open[id]
}

// AdmitREST answers RESOURCE_EXHAUSTED for a REST call of a throttled
// identity, before anything of it is parsed (server.Options.AdmitREST).
func (g *Guard) AdmitREST(r *http.Request) error {
	c := g.o.Resolver.OfHTTP(r)
	if err := g.admit(c); err != nil {
		g.report(r.Context(), c, RESTTarget(r), err)
		return err
	}
	return nil
}

// RefusedREST charges the caller of a REST call refused before the gateway
// read it (server.Options.RefusedREST).
func (g *Guard) RefusedREST(r *http.Request, err error) {
	if refused(err) {
		g.charge(g.o.Resolver.OfHTTP(r))
	}
}

func (g *Guard) report(ctx context.Context, c Caller, target string, err error) {
	if g.o.Throttled != nil {
		g.o.Throttled(ctx, c, target, err)
	}
}

// maxRESTTarget bounds the method and path of a REST call named in an
// audit event (the path is the caller's).
const maxRESTTarget = 256

// RESTTarget names a REST call as audited: "REST <method> <path>", at most
// 256 bytes.
func RESTTarget(r *http.Request) string {
	t := "REST " + r.Method + " " + r.URL.EscapedPath()
	if len(t) > maxRESTTarget {
		t = t[:maxRESTTarget]
	}
	return t
}

// OpenWatchREST counts a long-lived REST stream of r's caller (the
// dashboard's event stream) as one of its watches, refusing it beyond
// MaxWatches; release is called when the stream ends.
func (g *Guard) OpenWatchREST(r *http.Request) (release func(), err error) {
	c := g.o.Resolver.OfHTTP(r)
	if err := g.openWatch(c); err != nil {
		g.report(r.Context(), c, RESTTarget(r), err)
		return nil, err
	}
	return func() { g.closeWatch(c) }, nil
}
