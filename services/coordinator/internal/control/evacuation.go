package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
)

// Audit actions of EvacuationService calls (the leader audits the
// operations' own steps, see package evac).
const (
	ActionEvacuate = "evacuation.request"
	ActionRestore  = "restore.request"
	ActionCancel   = evac.ActionCancel
	ActionResume   = evac.ActionResume
)

// EvacuationOptions configure the EvacuationService.
type EvacuationOptions struct {
	Store *state.Store
	// Source names this coordinator process in audit event ids.
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox (auditlog.Refusals aggregates them per
	// caller).
	Denied EventWriter
	Logger zerolog.Logger
	Now    func() time.Time
}

// Evacuation serves EvacuationService: it plans and stores operations
// (package evac), which the leader runs, and reads and changes their
// records.
type Evacuation struct {
	drplanev1.UnimplementedEvacuationServiceServer
	o   EvacuationOptions
	ops *evac.Store
	aud *auditor
}

// NewEvacuation returns the service.
func NewEvacuation(o EvacuationOptions) *Evacuation {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &Evacuation{o: o, ops: evac.NewStore(o.Store), aud: newAuditor(o.Store, o.Denied, o.Source+"/evacuation", o.Now, o.Logger, describeEvacuation)}
}

// AuditDenied returns a unary server interceptor that audits refused
// EvacuationService mutations as DENIED; chain it right before
// authentication.
func (e *Evacuation) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return e.aud.deniedInterceptor(authn)
}

func describeEvacuation(req any) (action, target string, params map[string]string, ok bool) {
	params = map[string]string{}
	set := func(k, v string) {
		if v != "" {
			params[k] = v
		}
	}
	switch r := req.(type) {
	case *drplanev1.EvacuateRequest:
		set("to", r.GetTo())
		set("reason", r.GetReason())
		set("parallel", itoa(r.GetParallel()))
		if r.GetDryRun() {
			params["dry_run"] = "true"
		}
		return ActionEvacuate, r.GetDc(), params, true
	case *drplanev1.RestoreRequest:
		set("reason", r.GetReason())
		set("parallel", itoa(r.GetParallel()))
		if r.GetMoveHome() {
			params["move_home"] = "true"
		}
		if r.GetDryRun() {
			params["dry_run"] = "true"
		}
		return ActionRestore, r.GetDc(), params, true
	case *drplanev1.CancelOperationRequest:
		set("reason", r.GetReason())
		return ActionCancel, r.GetId(), params, true
	case *drplanev1.ResumeOperationRequest:
		set("reason", r.GetReason())
		return ActionResume, r.GetId(), params, true
	}
	return "", "", nil, false
}

// world reads what a plan is made from.
func (e *Evacuation) world(ctx context.Context) (evac.World, error) {
	w, err := evac.LoadWorld(ctx, e.o.Store)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return w, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology stored in etcd yet")
	case err != nil:
		return w, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the topology and shard maps from etcd")
	}
	return w, nil
}

// running fails with CONFLICT when an operation holds dc.
func (e *Evacuation) running(ctx context.Context, dc string) error {
	resp, err := e.o.Store.Client().Get(ctx, e.ops.LockKey(dc))
	if err != nil {
		return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the DC's operation lock from etcd")
	}
	if len(resp.Kvs) > 0 {
		return lockedError(dc, string(resp.Kvs[0].Value))
	}
	return nil
}

func lockedError(dc, holder string) error {
	ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT,
		"operation %s is already running for DC %s: watch, cancel or wait for it (drctl operations show %s)", holder, dc, holder)
	ae.Field = evac.FieldDC
	return ae.WithMetadata("operation_id", holder)
}

// start stores a planned operation, or returns it as a dry run.
func (e *Evacuation) start(ctx context.Context, who string, req any, op evac.Operation, dryRun bool) (*drplanev1.Operation, error) {
	ev := e.aud.newEvent(who, req)
	if dryRun {
		if err := e.running(ctx, op.DC); err != nil {
			return nil, err
		}
		p := operationToProto(op, true)
		p.DryRun = true
		return p, nil
	}
	created, err := e.ops.Create(ctx, op)
	var le *evac.LockedError
	switch {
	case errors.As(err, &le):
		err = lockedError(le.DC, le.Holder)
	case errors.Is(err, evac.ErrTooLarge):
		err = apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, err.Error())
	case err != nil:
		err = apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the operation in etcd")
	}
	if err != nil {
		e.aud.finish(ctx, ev, err)
		return nil, err
	}
	ev.Params["operation_id"] = created.ID
	ev.Params["shards"] = itoa(int32(min(len(created.Handoffs), 1<<30))) //nolint:gosec // bounded
	e.aud.finish(ctx, ev, nil)
	e.o.Logger.Info().Str("operation", created.ID).Str("kind", string(op.Kind)).Str("dc", op.DC).Str("by", who).
		Int("shards", len(op.Handoffs)).Msg("operation stored; the leader runs it")
	return operationToProto(created, true), nil
}

// Evacuate plans handing every shard of a DC off and stores the operation.
func (e *Evacuation) Evacuate(ctx context.Context, req *drplanev1.EvacuateRequest) (*drplanev1.EvacuateResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	op, err := e.planEvacuate(ctx, who, req)
	if err != nil {
		return nil, e.aud.refused(ctx, who, req, err)
	}
	p, err := e.start(ctx, who, req, op, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return &drplanev1.EvacuateResponse{OperationId: p.GetId(), Operation: p}, nil
}

func (e *Evacuation) planEvacuate(ctx context.Context, who string, req *drplanev1.EvacuateRequest) (evac.Operation, error) {
	parallel, err := evac.CheckParallel(req.GetParallel())
	if err != nil {
		return evac.Operation{}, err
	}
	w, err := e.world(ctx)
	if err != nil {
		return evac.Operation{}, err
	}
	plan, err := evac.PlanEvacuate(w, req.GetDc(), req.GetTo(), parallel)
	if err != nil {
		return evac.Operation{}, err
	}
	now := e.o.Now().UTC()
	return evac.Operation{ID: evac.NewID(evac.KindEvacuate, now), Kind: evac.KindEvacuate, DC: req.GetDc(), To: req.GetTo(),
		Parallel: parallel, State: evac.Pending, RequestedBy: who, Reason: strings.TrimSpace(req.GetReason()), CreatedAt: now,
		Targets: plan.Targets, Handoffs: plan.Handoffs}, nil
}

// Restore sets a DC ACTIVE again and, with move_home, plans handing its
// home shards back.
func (e *Evacuation) Restore(ctx context.Context, req *drplanev1.RestoreRequest) (*drplanev1.RestoreResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	op, err := e.planRestore(ctx, who, req)
	if err != nil {
		return nil, e.aud.refused(ctx, who, req, err)
	}
	p, err := e.start(ctx, who, req, op, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return &drplanev1.RestoreResponse{OperationId: p.GetId(), Operation: p}, nil
}

func (e *Evacuation) planRestore(ctx context.Context, who string, req *drplanev1.RestoreRequest) (evac.Operation, error) {
	parallel, err := evac.CheckParallel(req.GetParallel())
	if err != nil {
		return evac.Operation{}, err
	}
	w, err := e.world(ctx)
	if err != nil {
		return evac.Operation{}, err
	}
	plan, err := evac.PlanRestore(w, req.GetDc(), parallel)
	if err != nil {
		return evac.Operation{}, err
	}
	if !req.GetMoveHome() {
		plan = evac.Plan{}
	}
	now := e.o.Now().UTC()
	return evac.Operation{ID: evac.NewID(evac.KindRestore, now), Kind: evac.KindRestore, DC: req.GetDc(), MoveHome: req.GetMoveHome(),
		Parallel: parallel, State: evac.Pending, RequestedBy: who, Reason: strings.TrimSpace(req.GetReason()), CreatedAt: now,
		Targets: plan.Targets, Handoffs: plan.Handoffs}, nil
}

const (
	defaultOperationsPage = 50
	maxOperationsPage     = 500
)

// ListOperations returns operations newest first, without their handoffs.
func (e *Evacuation) ListOperations(ctx context.Context, req *drplanev1.ListOperationsRequest) (*drplanev1.ListOperationsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxOperationsPage:
		return nil, apierr.InvalidArgument("page_size", fmt.Sprintf("page_size must be between 0 and %d", maxOperationsPage))
	case size == 0:
		size = defaultOperationsPage
	}
	all, _, err := e.ops.List(ctx)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read operations from etcd")
	}
	out := &drplanev1.ListOperationsResponse{}
	for i := len(all) - 1; i >= 0 && len(out.Operations) < size; i-- {
		op := all[i]
		if k := req.GetKind(); k != drplanev1.OperationKind_OPERATION_KIND_UNSPECIFIED && kindToProto(op.Kind) != k {
			continue
		}
		if req.GetRunningOnly() && !op.State.Unfinished() {
			continue
		}
		out.Operations = append(out.Operations, operationToProto(op, false))
	}
	return out, nil
}

// get reads one operation as an API error when missing.
func (e *Evacuation) get(ctx context.Context, id string) (evac.Operation, error) {
	if id == "" {
		return evac.Operation{}, apierr.InvalidArgument("id", "id is required")
	}
	op, err := e.ops.Get(ctx, id)
	switch {
	case errors.Is(err, evac.ErrNotFound):
		return op, notFound("id", "operation", id)
	case err != nil:
		return op, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the operation from etcd")
	}
	return op, nil
}

// GetOperation returns one operation with its handoffs.
func (e *Evacuation) GetOperation(ctx context.Context, req *drplanev1.GetOperationRequest) (*drplanev1.GetOperationResponse, error) {
	op, err := e.get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &drplanev1.GetOperationResponse{Operation: operationToProto(op, true)}, nil
}

// WatchOperation streams the operation until it is finished.
func (e *Evacuation) WatchOperation(req *drplanev1.WatchOperationRequest, stream grpc.ServerStreamingServer[drplanev1.WatchOperationResponse]) error {
	ctx := stream.Context()
	op, err := e.get(ctx, req.GetId())
	if err != nil {
		return err
	}
	sent := map[int]bool{}
	send := func(op evac.Operation) error {
		resp := &drplanev1.WatchOperationResponse{Operation: operationToProto(op, true)}
		for i, h := range op.Handoffs {
			if handoffOver(h) && !sent[i] {
				sent[i] = true
				resp.Done = append(resp.Done, handoffToProto(h))
			}
		}
		return stream.Send(resp)
	}
	if err := send(op); err != nil {
		return err
	}
	from := op.Revision + 1
	for op.State.Unfinished() {
		got := false
		for ev := range e.ops.Watch(ctx, op.ID, from) {
			from = ev.Rev + 1
			if ev.Deleted {
				return notFound("id", "operation", op.ID)
			}
			op = ev.Value
			op.Revision = ev.Rev
			got = true
			if err := send(op); err != nil {
				return err
			}
			if !op.State.Unfinished() {
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if !got {
			// The watch broke (compaction, etcd leader change): read again.
			cur, err := e.get(ctx, op.ID)
			if err != nil {
				return err
			}
			if cur.Revision != op.Revision {
				op = cur
				if err := send(op); err != nil {
					return err
				}
			}
			from = cur.Revision + 1
		}
	}
	return nil
}

// handoffOver reports whether a handoff is over, as a watcher prints it.
func handoffOver(h evac.Handoff) bool {
	return h.Step == evac.StepMoved || h.Step == evac.StepSkipped || h.Step == evac.StepAborted
}

// CancelOperation asks the leader to stop the operation after its current
// wave.
func (e *Evacuation) CancelOperation(ctx context.Context, req *drplanev1.CancelOperationRequest) (*drplanev1.CancelOperationResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	op, err := e.change(ctx, req.GetId(), func(op *evac.Operation) error {
		switch {
		case op.State == evac.Canceling:
			return nil
		case !op.State.Unfinished():
			ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "operation %s is %s: only a pending or running operation can be canceled", op.ID, op.State)
			ae.Field = "id"
			return ae
		}
		op.State = evac.Canceling
		return nil
	})
	e.aud.finish(ctx, e.aud.newEvent(who, req), err)
	if err != nil {
		return nil, err
	}
	return &drplanev1.CancelOperationResponse{Operation: operationToProto(op, true)}, nil
}

// ResumeOperation goes on with a canceled or failed operation.
func (e *Evacuation) ResumeOperation(ctx context.Context, req *drplanev1.ResumeOperationRequest) (*drplanev1.ResumeOperationResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	op, err := e.change(ctx, req.GetId(), func(op *evac.Operation) error {
		if op.State != evac.Canceled && op.State != evac.Failed {
			ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "operation %s is %s: only a canceled or failed operation can be resumed", op.ID, op.State)
			ae.Field = "id"
			return ae
		}
		op.State, op.Error, op.FinishedAt = evac.Pending, "", time.Time{}
		for i := range op.Handoffs {
			if h := &op.Handoffs[i]; h.Step == evac.StepAborted || h.Step == evac.StepFrozen {
				h.Step = evac.StepPending
			}
		}
		return nil
	})
	e.aud.finish(ctx, e.aud.newEvent(who, req), err)
	if err != nil {
		return nil, err
	}
	return &drplanev1.ResumeOperationResponse{Operation: operationToProto(op, true)}, nil
}

// change applies fn to the stored operation id and writes it back
// (compare-and-swap, retried when the leader wrote meanwhile).
func (e *Evacuation) change(ctx context.Context, id string, fn func(*evac.Operation) error) (evac.Operation, error) {
	for attempt := 0; ; attempt++ {
		op, err := e.get(ctx, id)
		if err != nil {
			return op, err
		}
		if err := fn(&op); err != nil {
			return op, err
		}
		rev, err := e.ops.Update(ctx, op, nil)
		var le *evac.LockedError
		switch {
		case err == nil:
			op.Revision = rev
			return op, nil
		case errors.As(err, &le):
			return op, lockedError(le.DC, le.Holder)
		case errors.Is(err, state.ErrConflict) && attempt < 10:
			continue
		default:
			return op, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "write the operation to etcd")
		}
	}
}
