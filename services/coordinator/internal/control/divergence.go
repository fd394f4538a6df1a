package control

import (
	"context"
	"errors"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Divergence serves DivergenceService from the entries reship and the
// collectors record in etcd (package divergence).
type Divergence struct {
	drplanev1.UnimplementedDivergenceServiceServer
	Store *state.Store
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
	es, err := divergence.List(ctx, d.Store, req.GetOriginDc())
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
	e, err := divergence.Get(ctx, d.Store, req.GetId())
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
	default:
		out.State = drplanev1.DivergenceState_DIVERGENCE_STATE_OPEN
	}
	return out
}
