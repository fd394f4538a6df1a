package control

import (
	"context"
	"sort"
	"strings"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// ListKillSwitches returns every kill switch that is set, global first.
func (f *Failover) ListKillSwitches(ctx context.Context, _ *drplanev1.ListKillSwitchesRequest) (*drplanev1.ListKillSwitchesResponse, error) {
	sws, err := f.o.Store.KillSwitches(ctx)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read kill switches from etcd")
	}
	sort.SliceStable(sws, func(i, j int) bool {
		gi, gj := sws[i].Scope == state.KillSwitchScope("", ""), sws[j].Scope == state.KillSwitchScope("", "")
		if gi != gj {
			return gi
		}
		return sws[i].Scope < sws[j].Scope
	})
	resp := &drplanev1.ListKillSwitchesResponse{}
	for _, ks := range sws {
		resp.KillSwitches = append(resp.KillSwitches, killSwitchToProto(ks))
	}
	return resp, nil
}

// SetKillSwitch sets (or replaces) the kill switch of a scope. The request
// is checked here and applied by the leader through the operations queue.
func (f *Failover) SetKillSwitch(ctx context.Context, req *drplanev1.SetKillSwitchRequest) (*drplanev1.SetKillSwitchResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ks, err := f.checkSetKillSwitch(ctx, who, req)
	if err != nil {
		return nil, f.aud.refused(ctx, who, req, err)
	}
	op, err := f.o.Queue.Submit(ctx, ops.KindSetKillSwitch, ops.Params{KillSwitch: &ks}, who)
	if err != nil {
		return nil, f.aud.queueError(ctx, who, req, err)
	}
	if op.Result != nil && op.Result.KillSwitch != nil {
		ks = *op.Result.KillSwitch
	}
	f.o.Logger.Info().Str("scope", ks.Scope).Str("by", who).Str("reason", ks.Reason).Str("op", op.ID).Msg("kill switch set")
	return &drplanev1.SetKillSwitchResponse{KillSwitch: killSwitchToProto(ks)}, nil
}

// checkSetKillSwitch validates a request and returns the switch to set.
func (f *Failover) checkSetKillSwitch(ctx context.Context, who string, req *drplanev1.SetKillSwitchRequest) (state.KillSwitch, error) {
	if err := scopeShape(req.GetDc(), req.GetCluster()); err != nil {
		return state.KillSwitch{}, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" {
		return state.KillSwitch{}, apierr.InvalidArgument("reason", "a reason is required: say why automatic failover is stopped")
	}
	if err := f.checkScope(ctx, req.GetDc(), req.GetCluster()); err != nil {
		return state.KillSwitch{}, err
	}
	return state.KillSwitch{
		Scope: state.KillSwitchScope(req.GetDc(), req.GetCluster()), Reason: reason, SetBy: who, SetAt: f.o.Now().UTC(),
	}, nil
}

// ClearKillSwitch removes the kill switch of a scope, through the
// operations queue like SetKillSwitch.
func (f *Failover) ClearKillSwitch(ctx context.Context, req *drplanev1.ClearKillSwitchRequest) (*drplanev1.ClearKillSwitchResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	dc, cluster := req.GetDc(), req.GetCluster()
	if err := f.checkClear(ctx, dc, cluster); err != nil {
		return nil, f.aud.refused(ctx, who, req, err)
	}
	op, err := f.o.Queue.Submit(ctx, ops.KindClearKillSwitch, ops.Params{DC: dc, Cluster: cluster}, who)
	if err != nil {
		return nil, f.aud.queueError(ctx, who, req, err)
	}
	resp := &drplanev1.ClearKillSwitchResponse{}
	if r := op.Result; r != nil && r.Cleared {
		resp.Cleared = true
		if r.KillSwitch != nil {
			resp.KillSwitch = killSwitchToProto(*r.KillSwitch)
		}
	}
	f.o.Logger.Info().Str("scope", state.KillSwitchScope(dc, cluster)).Str("by", who).Bool("cleared", resp.GetCleared()).
		Str("op", op.ID).Msg("kill switch cleared")
	return resp, nil
}

// checkClear validates a clear request. A switch that is set can always be
// cleared, even if its DC or cluster has left the topology since; clearing
// one that is not set needs a scope the topology knows.
func (f *Failover) checkClear(ctx context.Context, dc, cluster string) error {
	if err := scopeShape(dc, cluster); err != nil {
		return err
	}
	scope := state.KillSwitchScope(dc, cluster)
	sws, err := f.o.Store.KillSwitches(ctx)
	if err != nil {
		return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read kill switches from etcd")
	}
	for _, ks := range sws {
		if ks.Scope == scope {
			return nil
		}
	}
	return f.checkScope(ctx, dc, cluster)
}

// scopeShape checks that a cluster scope names its DC.
func scopeShape(dc, cluster string) error {
	if cluster != "" && dc == "" {
		return apierr.InvalidArgument("dc", "a cluster kill switch needs the cluster's dc")
	}
	return nil
}

// checkScope checks a DC or cluster scope against the topology.
func (f *Failover) checkScope(ctx context.Context, dc, cluster string) error {
	switch {
	case dc == "":
		return nil
	case cluster == "":
		t, err := readTopology(ctx, f.o.Store)
		if err != nil {
			return err
		}
		if _, ok := t.DC(dc); !ok {
			return notFound("dc", "dc", dc)
		}
		return nil
	}
	_, err := f.lookupCluster(ctx, dc, cluster)
	return err
}

// parseScope splits a kill-switch scope into its DC and cluster.
func parseScope(scope string) (dc, cluster string) {
	if rest, ok := strings.CutPrefix(scope, "dc/"); ok {
		return rest, ""
	}
	if rest, ok := strings.CutPrefix(scope, "cluster/"); ok {
		dc, cluster, _ = strings.Cut(rest, "/")
		return dc, cluster
	}
	return "", ""
}
