package control

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
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

// SetKillSwitch sets (or replaces) the kill switch of a scope.
func (f *Failover) SetKillSwitch(ctx context.Context, req *drplanev1.SetKillSwitchRequest) (*drplanev1.SetKillSwitchResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := f.newEvent(who, req)
	resp, err := f.setKillSwitch(ctx, who, req)
	f.finish(ctx, ev, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (f *Failover) setKillSwitch(ctx context.Context, who string, req *drplanev1.SetKillSwitchRequest) (*drplanev1.SetKillSwitchResponse, error) {
	if err := scopeShape(req.GetDc(), req.GetCluster()); err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" {
		return nil, apierr.InvalidArgument("reason", "a reason is required: say why automatic failover is stopped")
	}
	if err := f.checkScope(ctx, req.GetDc(), req.GetCluster()); err != nil {
		return nil, err
	}
	ks := state.KillSwitch{
		Scope: state.KillSwitchScope(req.GetDc(), req.GetCluster()), Reason: reason, SetBy: who, SetAt: f.o.Now().UTC(),
	}
	if err := f.o.Store.PutKillSwitch(ctx, ks); err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the kill switch in etcd")
	}
	f.o.Logger.Info().Str("scope", ks.Scope).Str("by", who).Str("reason", reason).Msg("kill switch set")
	return &drplanev1.SetKillSwitchResponse{KillSwitch: killSwitchToProto(ks)}, nil
}

// ClearKillSwitch removes the kill switch of a scope.
func (f *Failover) ClearKillSwitch(ctx context.Context, req *drplanev1.ClearKillSwitchRequest) (*drplanev1.ClearKillSwitchResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := f.newEvent(who, req)
	resp, err := f.clearKillSwitch(ctx, req)
	if resp != nil {
		ev.Params["cleared"] = strconv.FormatBool(resp.GetCleared())
	}
	f.finish(ctx, ev, err)
	if err != nil {
		return nil, err
	}
	f.o.Logger.Info().Str("scope", ev.Target).Str("by", who).Bool("cleared", resp.GetCleared()).Msg("kill switch cleared")
	return resp, nil
}

func (f *Failover) clearKillSwitch(ctx context.Context, req *drplanev1.ClearKillSwitchRequest) (*drplanev1.ClearKillSwitchResponse, error) {
	dc, cluster := req.GetDc(), req.GetCluster()
	if err := scopeShape(dc, cluster); err != nil {
		return nil, err
	}
	scope := state.KillSwitchScope(dc, cluster)
	sws, err := f.o.Store.KillSwitches(ctx)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read kill switches from etcd")
	}
	for _, ks := range sws {
		if ks.Scope != scope {
			continue
		}
		// A switch that is set can always be cleared, even if its DC or
		// cluster has left the topology since.
		if err := f.o.Store.DeleteKillSwitch(ctx, scope); err != nil {
			return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "remove the kill switch from etcd")
		}
		return &drplanev1.ClearKillSwitchResponse{Cleared: true, KillSwitch: killSwitchToProto(ks)}, nil
	}
	if err := f.checkScope(ctx, dc, cluster); err != nil {
		return nil, err
	}
	return &drplanev1.ClearKillSwitchResponse{}, nil
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
