package repl

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// ActionDLQRetry is the audit action of RetryDeadLetters.
const ActionDLQRetry = "replication.dlq_retry"

const (
	// auditTimeout bounds one write to the audit outbox.
	auditTimeout = 5 * time.Second
	// auditSequences is how many sequences an audit event lists.
	auditSequences = 20
)

// EventWriter stores audit events: audit.Outbox, or for refused calls
// auditlog.Refusals.
type EventWriter interface {
	Put(ctx context.Context, ev audit.Event) error
}

// auditor writes the audit events of RetryDeadLetters calls.
type auditor struct {
	outbox EventWriter
	denied EventWriter
	source string
	now    func() time.Time
	log    zerolog.Logger
	seq    atomic.Uint64
}

func newAuditor(st *state.Store, denied EventWriter, source string, now func() time.Time, log zerolog.Logger) *auditor {
	return &auditor{outbox: audit.NewOutbox(st), denied: denied, source: source, now: now, log: log}
}

// event starts the audit event of a retry request by who.
func (a *auditor) event(who string, req *drplanev1.RetryDeadLettersRequest) *audit.Event {
	params := map[string]string{"dc": req.GetDc()}
	if req.GetAll() {
		params["all"] = "true"
	}
	if seqs := req.GetSequences(); len(seqs) > 0 {
		parts := make([]string, 0, min(len(seqs), auditSequences))
		for _, s := range seqs[:min(len(seqs), auditSequences)] {
			parts = append(parts, strconv.FormatUint(s, 10))
		}
		if len(seqs) > auditSequences {
			parts = append(parts, "…")
		}
		params["sequences"] = strings.Join(parts, ",")
	}
	return &audit.Event{Actor: "token:" + who, Action: ActionDLQRetry, Target: req.GetDc(), Params: params}
}

// finish sets the event's id, time and outcome (from err, else from
// failed) and puts it in the outbox; the write outlives the caller's
// context. A failed write is logged only: the retry has happened.
func (a *auditor) finish(ctx context.Context, ev *audit.Event, err error, failed string) {
	now := a.now()
	ev.ID = audit.NewID(now, a.source, a.seq.Add(1))
	ev.Time = now.UTC()
	switch {
	case err != nil && apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED):
		ev.Outcome, ev.Error = audit.OutcomeDenied, apierr.Describe(err)
	case err != nil:
		ev.Outcome, ev.Error = audit.OutcomeFailed, apierr.Describe(err)
	case failed != "":
		ev.Outcome, ev.Error = audit.OutcomeFailed, failed
	default:
		ev.Outcome = audit.OutcomeOK
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

// AuditDenied returns a unary server interceptor that audits
// RetryDeadLetters calls refused with PERMISSION_DENIED; chain it right
// before authentication (see server.Options.PreAuth).
func (s *Service) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		r, ok := req.(*drplanev1.RetryDeadLettersRequest)
		if err == nil || !ok || !apierr.Is(err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED) {
			return resp, err
		}
		p, aerr := authn.Authenticate(ctx)
		if aerr != nil {
			return resp, err
		}
		s.aud.finish(ctx, s.aud.event(p.Name, r), err, "")
		return resp, err
	}
}
