package control

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// DivergenceOptions configure the DivergenceService.
type DivergenceOptions struct {
	Store *state.Store
	// Queue is the operations queue resolutions go through.
	Queue *ops.Queue
	// Source names this coordinator process in audit event ids.
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox.
	Denied EventWriter
	Logger zerolog.Logger
	Now    func() time.Time
}

// Divergence serves DivergenceService from the entries reship and the
// collectors record in etcd (package divergence); resolutions go through
// the leader's operations queue (kind resolve_divergence).
type Divergence struct {
	drplanev1.UnimplementedDivergenceServiceServer
	o   DivergenceOptions
	aud *auditor
}

// NewDivergence returns the service.
func NewDivergence(o DivergenceOptions) *Divergence {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &Divergence{o: o, aud: newAuditor(o.Store, o.Denied, o.Source+"/divergence", o.Now, o.Logger, describeDivergence)}
}

// AuditDenied returns a unary server interceptor that audits refused
// ResolveDivergence calls as DENIED; chain it right before authentication.
func (d *Divergence) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return d.aud.deniedInterceptor(authn)
}

func describeDivergence(req any) (action, target string, params map[string]string, ok bool) {
	r, ok := req.(*drplanev1.ResolveDivergenceRequest)
	if !ok {
		return "", "", nil, false
	}
	return ops.ActionDivergenceResolve, r.GetId(), map[string]string{"action": r.GetAction(), "reason": r.GetReason()}, true
}

// ResolveDivergence records an operator's decision on an entry: checked
// here, applied by the leader (ops.Resolve), which audits it.
func (d *Divergence) ResolveDivergence(ctx context.Context, req *drplanev1.ResolveDivergenceRequest) (*drplanev1.ResolveDivergenceResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	p := ops.Params{DivergenceID: req.GetId(), Action: strings.ToLower(strings.TrimSpace(req.GetAction())), Reason: req.GetReason()}
	if err := d.checkResolve(ctx, p); err != nil {
		return nil, d.aud.refused(ctx, who, req, err)
	}
	op, err := d.o.Queue.Submit(ctx, ops.KindResolveDivergence, p, who)
	if err != nil {
		return nil, d.aud.queueError(ctx, who, req, err)
	}
	resp := &drplanev1.ResolveDivergenceResponse{OperationId: op.ID}
	if op.Result != nil && op.Result.Divergence != nil {
		resp.Entry = divergenceToProto(*op.Result.Divergence)
	}
	d.o.Logger.Info().Str("divergence", p.DivergenceID).Str("action", p.Action).Str("by", who).Str("reason", p.Reason).
		Str("op", op.ID).Str("state", resp.GetEntry().GetState().String()).Msg("divergence resolved")
	return resp, nil
}

// checkResolve refuses most bad requests before they are queued, with the
// error the leader would record.
func (d *Divergence) checkResolve(ctx context.Context, p ops.Params) error {
	if err := ops.CheckResolveRequest(p); err != nil {
		return err
	}
	e, err := divergence.Get(ctx, d.o.Store, p.DivergenceID)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return notFound(ops.FieldDivergenceID, "divergence entry", p.DivergenceID)
	case err != nil:
		return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read divergence entry from etcd")
	}
	if !divergence.Resolvable(e.State) {
		_, err := ops.Resolve(e, shardmap.Map{}, topology.Topology{}, p, "", "", d.o.Now())
		return err
	}
	return nil
}

const (
	defaultDivergencePage = 100
	maxDivergencePage     = 1000
)

// ListDivergence returns entries newest first.
func (d *Divergence) ListDivergence(ctx context.Context, req *drplanev1.ListDivergenceRequest) (*drplanev1.ListDivergenceResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxDivergencePage:
		return nil, apierr.InvalidArgument("page_size", "page_size must be between 0 and 1000")
	case size == 0:
		size = defaultDivergencePage
	}
	es, err := divergence.List(ctx, d.o.Store, req.GetOriginDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read divergence entries from etcd")
	}
	out := &drplanev1.ListDivergenceResponse{}
	kept := es[:0]
	for _, e := range es {
		if req.GetKeyspace() == "" || e.Keyspace == req.GetKeyspace() {
			kept = append(kept, e)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].DetectedAt.After(kept[j].DetectedAt) })
	out.Total = int64(len(kept))
	for _, e := range kept[:min(len(kept), size)] {
		out.Entries = append(out.Entries, divergenceToProto(e))
	}
	return out, nil
}

// GetDivergence returns one entry with the refused change.
func (d *Divergence) GetDivergence(ctx context.Context, req *drplanev1.GetDivergenceRequest) (*drplanev1.GetDivergenceResponse, error) {
	if req.GetId() == "" {
		return nil, apierr.InvalidArgument("id", "id is required")
	}
	e, err := divergence.Get(ctx, d.o.Store, req.GetId())
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, notFound("id", "divergence entry", req.GetId())
	case err != nil:
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read divergence entry from etcd")
	}
	out := &drplanev1.GetDivergenceResponse{Entry: divergenceToProto(e)}
	if len(e.Change) > 0 {
		ch := &drplanev1.ChangeEvent{}
		if proto.Unmarshal(e.Change, ch) == nil {
			out.Change = ch
		}
	}
	return out, nil
}

func divergenceToProto(e divergence.Entry) *drplanev1.Divergence {
	out := &drplanev1.Divergence{
		Id: e.ID(), OriginDc: e.Origin, RequestId: e.RequestID, Gtid: e.GTID, Keyspace: e.Keyspace, Shard: e.Shard,
		OwnerDc: e.Owner, FenceWatermark: e.FenceWatermark, FenceOperationId: e.FenceOperation,
		DetectedBy: e.DetectedBy, DetectedAt: timestamppb.New(e.DetectedAt), Rows: int32(min(e.Rows, 1<<30)), //nolint:gosec // bounded
		Kind: e.EffectiveKind(), FailoverId: e.FailoverID,
	}
	if !e.CommitTime.IsZero() {
		out.CommitTime = timestamppb.New(e.CommitTime)
	}
	switch e.State {
	case divergence.Replayed:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYED
	case divergence.Discarded:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_DISCARDED
	case divergence.Replaying:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING
	case divergence.Conflict:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_CONFLICT
	default:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_OPEN
	}
	if r := e.Resolution; r != nil {
		out.Resolution = &drplanev1.DivergenceResolution{
			Action: r.Action, ResolvedBy: r.By, Reason: r.Reason, ResolvedAt: timestamppb.New(r.At), OperationId: r.OperationID,
			TargetDc: r.Target, Detail: r.Detail, ReplayGtid: r.GTID,
		}
		if !r.FinishedAt.IsZero() {
			out.Resolution.FinishedAt = timestamppb.New(r.FinishedAt)
		}
	}
	return out
}
