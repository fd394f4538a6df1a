package control

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// Audit actions of FailoverService calls.
const (
	ActionSwitchover      = "switchover.request"
	ActionKillSwitchSet   = "killswitch.set"
	ActionKillSwitchClear = "killswitch.clear"
)

// auditTimeout bounds one write to the audit outbox.
const auditTimeout = 5 * time.Second

// describe returns the audit action, target and parameters of a mutating
// FailoverService request; ok is false for requests that are not audited.
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
	case *drplanev1.ClearKillSwitchRequest:
		return ActionKillSwitchClear, state.KillSwitchScope(r.GetDc(), r.GetCluster()), map[string]string{}, true
	}
	return "", "", nil, false
}

// newEvent starts the audit event of a mutating call by who; finish
// completes and stores it.
func (f *Failover) newEvent(who string, req any) *audit.Event {
	action, target, params, _ := describe(req)
	return &audit.Event{Actor: "token:" + who, Action: action, Target: target, Params: params}
}

// finish sets the event's id, time and outcome from err and puts it in the
// outbox. The write outlives the caller's context (a caller that hung up is
// audited too); a failed write is logged, and does not change the answer:
// the call's effect has already happened.
func (f *Failover) finish(ctx context.Context, ev *audit.Event, err error) {
	now := f.o.Now()
	ev.ID = audit.NewID(now, f.o.Source, f.seq.Add(1))
	ev.Time = now.UTC()
	switch {
	case err == nil:
		ev.Outcome = audit.OutcomeOK
	case apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED):
		ev.Outcome = audit.OutcomeDenied
		ev.Error = errorText(err)
	default:
		ev.Outcome = audit.OutcomeFailed
		ev.Error = errorText(err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if perr := f.outbox.Put(wctx, *ev); perr != nil {
		f.o.Logger.Error().Err(perr).Str("action", ev.Action).Str("target", ev.Target).Str("actor", ev.Actor).
			Str("outcome", ev.Outcome).Msg("audit event not written")
	}
}

// errorText is the audited form of err: the API error with its code.
func errorText(err error) string {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	if e, ok := apierr.FromError(err); ok {
		return apierr.Reason(e.Code) + ": " + e.Message
	}
	return err.Error()
}

// AuditDenied returns a unary server interceptor that writes a DENIED audit
// event for each mutating FailoverService call that the interceptors after
// it refuse with PERMISSION_DENIED; chain it right before authentication.
// The actor is found with authn. Calls without valid credentials
// (UNAUTHENTICATED) are not audited: anyone can make them, and every event
// is an etcd write.
func (f *Failover) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil || !apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED) {
			return resp, err
		}
		if _, _, _, ok := describe(req); !ok {
			return resp, err
		}
		p, aerr := authn.Authenticate(ctx)
		if aerr != nil {
			return resp, err
		}
		f.finish(ctx, f.newEvent(p.Name, req), err)
		return resp, err
	}
}
