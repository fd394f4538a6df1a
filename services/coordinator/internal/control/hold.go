package control

import (
	"context"
	"strings"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// ActionFailoverRelease is the audit action of ReleaseFailoverHold.
const ActionFailoverRelease = "failover.release"

// ReleaseFailoverHold records an operator's release of a cluster's
// failover hold; the DC's active HA agent applies it on its next cycle
// (it forgets the failovers and master changes before the release).
func (f *Failover) ReleaseFailoverHold(ctx context.Context, req *drplanev1.ReleaseFailoverHoldRequest) (*drplanev1.ReleaseFailoverHoldResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := f.aud.newEvent(who, req)
	resp, err := f.release(ctx, who, req)
	if err == nil && resp.GetHeld() {
		ev.Params["hold_reason"] = resp.GetHold().GetReason()
	}
	f.aud.finish(ctx, ev, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (f *Failover) release(ctx context.Context, who string, req *drplanev1.ReleaseFailoverHoldRequest) (*drplanev1.ReleaseFailoverHoldResponse, error) {
	dc, name := req.GetDc(), req.GetCluster()
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" {
		return nil, apierr.InvalidArgument("reason", "a reason is required: say why the cluster may fail over again")
	}
	if _, err := f.lookupCluster(ctx, dc, name); err != nil {
		return nil, err
	}
	mems, err := f.o.Store.Memories(ctx, dc)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the HA agent's cluster memory from etcd")
	}
	now := f.o.Now().UTC()
	rel := state.HoldRelease{DC: dc, Cluster: name, By: "operator:" + who, Reason: reason, At: now}
	if err := f.o.Store.PutHoldRelease(ctx, rel); err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the release in etcd")
	}
	resp := &drplanev1.ReleaseFailoverHoldResponse{ReleasedAt: timestamp(now)}
	for _, m := range mems {
		if m.Cluster == name && m.Hold != nil {
			resp.Held, resp.Hold = true, holdToProto(*m.Hold)
		}
	}
	f.o.Logger.Info().Str("cluster", dc+"/"+name).Str("by", who).Str("reason", reason).Bool("held", resp.Held).
		Msg("failover hold released")
	return resp, nil
}

func holdToProto(h state.FailoverHold) *drplanev1.FailoverHold {
	return &drplanev1.FailoverHold{Reason: h.Reason, Detail: h.Detail, Since: timestamp(h.Since), Until: timestamp(h.Until)}
}
