package auditlog

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/guard"
)

// ActionUnauthenticated is the audit action of a call refused for missing
// or unknown credentials.
const ActionUnauthenticated = "api.unauthenticated"

// ActorAnonymous is the actor of a call that presented no token.
const ActorAnonymous = "anonymous"

// ActionThrottled is the audit action of a call answered
// RESOURCE_EXHAUSTED because its caller had too many calls refused or
// too many watch streams open.
const ActionThrottled = "api.throttled"

// Rate limit defaults of RefusalsOptions.
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
	// Refusals writes the events, aggregated per caller. Nil: one is made
	// from Store, Source, Rate, Burst, Registerer and Now (and flushed
	// only by its own Run, which nobody calls: tests only).
	Refusals *Refusals
	// Resolver finds the caller's address.
	Resolver guard.Resolver
	// Store, Source, Rate, Burst and Registerer configure the Refusals
	// made when it is nil.
	Store      *state.Store
	Source     string
	Rate       float64
	Burst      int
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Unauthenticated audits API calls refused as UNAUTHENTICATED, and calls
// throttled by the guard, through Refusals so that a flood of them cannot
// fill etcd. Its interceptors go before authentication
// (server.Options.PreAuth and PreAuthStream).
type Unauthenticated struct {
	o   UnauthenticatedOptions
	ref *Refusals
	seq atomic.Uint64
}

// NewUnauthenticated returns the auditor.
func NewUnauthenticated(o UnauthenticatedOptions) *Unauthenticated {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	ref := o.Refusals
	if ref == nil {
		ref = NewRefusals(RefusalsOptions{
			Store: o.Store, Source: o.Source, Rate: o.Rate, Burst: o.Burst, Registerer: o.Registerer, Logger: o.Logger, Now: o.Now,
		})
	}
	return &Unauthenticated{o: o, ref: ref}
}

// Refusals is the aggregator the events go through.
func (u *Unauthenticated) Refusals() *Refusals { return u.ref }

// Unary is the unary server interceptor.
func (u *Unauthenticated) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) {
			u.record(ctx, ActionUnauthenticated, actorOf(ctx), u.o.Resolver.PeerOf(ctx), info.FullMethod, err)
		}
		return resp, err
	}
}

// Stream is the stream server interceptor.
func (u *Unauthenticated) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) {
			ctx := ss.Context()
			u.record(ctx, ActionUnauthenticated, actorOf(ctx), u.o.Resolver.PeerOf(ctx), info.FullMethod, err)
		}
		return err
	}
}

// REST audits a REST call the server refused as UNAUTHENTICATED before
// the gateway routed it (server.Options.RefusedREST): the target is
// "REST <method> <path>", the peer the client's address.
func (u *Unauthenticated) REST(r *http.Request, err error) {
	md := metadata.MD{}
	if h := r.Header.Get("Authorization"); h != "" {
		md.Set("authorization", h)
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	u.record(ctx, ActionUnauthenticated, actorOf(ctx), u.o.Resolver.PeerOfHTTP(r), guard.RESTTarget(r), err)
}

// Throttled audits a call the guard answered RESOURCE_EXHAUSTED
// (guard.Options.Throttled).
func (u *Unauthenticated) Throttled(ctx context.Context, c guard.Caller, target string, err error) {
	actor := c.ID
	if !strings.HasPrefix(actor, "token:") {
		actor = actorOf(ctx)
	}
	u.record(ctx, ActionThrottled, actor, c.Peer, target, err)
}

// record hands the event of a refused call to the aggregator.
func (u *Unauthenticated) record(ctx context.Context, action, actor, peerAddr, target string, err error) {
	now := u.o.Now()
	ev := audit.Event{
		ID: audit.NewID(now, u.o.Source+"/unauthenticated", u.seq.Add(1)), Time: now.UTC(),
		Actor: actor, Action: action, Target: target,
		Params: map[string]string{}, Outcome: audit.OutcomeDenied, Error: refusal(err),
	}
	if peerAddr != "" {
		ev.Params["peer"] = peerAddr
	}
	_ = u.ref.Put(ctx, ev) // logged by Put
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
