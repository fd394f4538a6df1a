package control

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// Audit actions of FailoverService calls. The kill-switch actions are the
// operation queue's, which audits applied and failed kill-switch changes.
const (
	ActionSwitchover      = "switchover.request"
	ActionKillSwitchSet   = ops.ActionKillSwitchSet
	ActionKillSwitchClear = ops.ActionKillSwitchClear
)

// auditTimeout bounds one write to the audit outbox.
const auditTimeout = 5 * time.Second

// describeFunc returns the audit action, target and parameters of a
// mutating request; ok is false for requests that are not audited.
type describeFunc func(req any) (action, target string, params map[string]string, ok bool)

// describe describes mutating FailoverService requests.
func describe(req any) (action, target string, params map[string]string, ok bool) {
	switch r := req.(type) {
	case *drplanev1.SwitchoverRequest:
		params = map[string]string{"timeout_seconds": itoa(r.GetTimeoutSeconds())}
		if r.GetTo() != "" {
			params["to"] = r.GetTo()
		}
		return ActionSwitchover, r.GetDc() + "/" + r.GetCluster(), params, true
	case *drplanev1.SetKillSwitchRequest:
		return ActionKillSwitchSet, state.KillSwitchScope(r.GetDc(), r.GetCluster()), map[string]string{"reason": r.GetReason()}, true
	case *drplanev1.ReleaseFailoverHoldRequest:
		return ActionFailoverRelease, r.GetDc() + "/" + r.GetCluster(), map[string]string{"reason": r.GetReason()}, true
	case *drplanev1.ClearKillSwitchRequest:
		return ActionKillSwitchClear, state.KillSwitchScope(r.GetDc(), r.GetCluster()), map[string]string{}, true
	}
	return "", "", nil, false
}

// EventWriter stores audit events: audit.Outbox, or for refused calls
// auditlog.Refusals.
type EventWriter interface {
	Put(ctx context.Context, ev audit.Event) error
}

// auditor writes the audit events of API calls to the etcd outbox.
type auditor struct {
	outbox   EventWriter
	denied   EventWriter
	source   string
	now      func() time.Time
	log      zerolog.Logger
	describe describeFunc
	seq      atomic.Uint64
}

func newAuditor(st *state.Store, denied EventWriter, source string, now func() time.Time, log zerolog.Logger, d describeFunc) *auditor {
	return &auditor{outbox: audit.NewOutbox(st), denied: denied, source: source, now: now, log: log, describe: d}
}

// newEvent starts the audit event of a mutating call by who; finish
// completes and stores it.
func (a *auditor) newEvent(who string, req any) *audit.Event {
	action, target, params, _ := a.describe(req)
	return &audit.Event{Actor: "token:" + who, Action: action, Target: target, Params: params}
}

// finish sets the event's id, time and outcome from err and puts it in the
// outbox. The write outlives the caller's context (a caller that hung up is
// audited too); a failed write is logged, and does not change the answer:
// the call's effect has already happened.
func (a *auditor) finish(ctx context.Context, ev *audit.Event, err error) {
	now := a.now()
	ev.ID = audit.NewID(now, a.source, a.seq.Add(1))
	ev.Time = now.UTC()
	switch {
	case err == nil:
		ev.Outcome = audit.OutcomeOK
	case apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED):
		ev.Outcome = audit.OutcomeDenied
		ev.Error = apierr.Describe(err)
	default:
		ev.Outcome = audit.OutcomeFailed
		ev.Error = apierr.Describe(err)
	}
	w := a.outbox
	if ev.Outcome == audit.OutcomeDenied && a.denied != nil {
		w = a.denied
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if perr := w.Put(wctx, *ev); perr != nil {
		a.log.Error().Err(perr).Str("action", ev.Action).Str("target", ev.Target).Str("actor", ev.Actor).
			Str("outcome", ev.Outcome).Msg("audit event not written")
	}
}

// refused audits a request refused before it was queued (or before it did
// anything) and returns err.
func (a *auditor) refused(ctx context.Context, who string, req any, err error) error {
	a.finish(ctx, a.newEvent(who, req), err)
	return err
}

// queueError audits a request whose operation could not be queued (the
// queue audits every operation it queued, when the leader finishes it) and
// returns err.
func (a *auditor) queueError(ctx context.Context, who string, req any, err error) error {
	if errors.Is(err, ops.ErrNotQueued) {
		a.finish(ctx, a.newEvent(who, req), err)
	}
	return err
}

// deniedInterceptor returns a unary server interceptor that writes a DENIED
// audit event for each request a describes that the interceptors after it
// refuse with PERMISSION_DENIED; chain it right before authentication. The
// actor is found with authn. Calls without valid credentials
// (UNAUTHENTICATED) are audited by auditlog.Unauthenticated instead, for
// every method and under a rate limit: anyone can make them, and every
// event is an etcd write.
func (a *auditor) deniedInterceptor(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil || !apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED) {
			return resp, err
		}
		if _, _, _, ok := a.describe(req); !ok {
			return resp, err
		}
		p, aerr := authn.Authenticate(ctx)
		if aerr != nil {
			return resp, err
		}
		a.finish(ctx, a.newEvent(p.Name, req), err)
		return resp, err
	}
}

// AuditDenied returns a unary server interceptor that audits refused
// mutating FailoverService calls as DENIED; chain it right before
// authentication (see server.Options.PreAuth).
func (f *Failover) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return f.aud.deniedInterceptor(authn)
}
