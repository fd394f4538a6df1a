package control

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/cityfail"
	"github.com/drplane/drplane/services/coordinator/internal/dclive"
)

// ActionCityFailoverRequest is the audit action of an operator's
// FailOverDC (the leader audits the flip itself: city_failover.flip or
// .held).
const ActionCityFailoverRequest = "city_failover.request"

// Bounds of FailOverDCRequest.timeout_seconds.
const (
	defaultCityFailoverWait = 10 * time.Second
	maxCityFailoverWait     = 300
)

// CityFailoverOptions configure the CityFailoverService.
type CityFailoverOptions struct {
	Store *state.Store
	// Source names this coordinator process in audit event ids.
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox.
	Denied EventWriter
	Logger zerolog.Logger
	Now    func() time.Time
}

// CityFailover serves CityFailoverService: it stores operators' city
// failovers (package cityfail), which the leader runs, and reads them.
type CityFailover struct {
	drplanev1.UnimplementedCityFailoverServiceServer
	o   CityFailoverOptions
	aud *auditor
}

// NewCityFailover returns the service.
func NewCityFailover(o CityFailoverOptions) *CityFailover {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &CityFailover{o: o, aud: newAuditor(o.Store, o.Denied, o.Source+"/cityfailover", o.Now, o.Logger, describeCityFailover)}
}

// AuditDenied returns a unary server interceptor that audits refused
// FailOverDC calls as DENIED; chain it right before authentication.
func (c *CityFailover) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return c.aud.deniedInterceptor(authn)
}

func describeCityFailover(req any) (action, target string, params map[string]string, ok bool) {
	r, ok := req.(*drplanev1.FailOverDCRequest)
	if !ok {
		return "", "", nil, false
	}
	params = map[string]string{"accept_loss": strconv.FormatBool(r.GetAcceptLoss()), "timeout_seconds": itoa(r.GetTimeoutSeconds())}
	if r.GetReason() != "" {
		params["reason"] = r.GetReason()
	}
	return ActionCityFailoverRequest, r.GetDc(), params, true
}

// FailOverDC stores an operator's city failover of a DC whose lease is
// gone (or sets its held one going again) and waits for the leader.
func (c *CityFailover) FailOverDC(ctx context.Context, req *drplanev1.FailOverDCRequest) (*drplanev1.FailOverDCResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := c.aud.newEvent(who, req)
	rec, err := c.start(ctx, who, req)
	if err != nil {
		c.aud.finish(ctx, ev, err)
		return nil, err
	}
	ev.Params["failover_id"] = rec.ID
	c.aud.finish(ctx, ev, nil)
	c.o.Logger.Warn().Str("failover", rec.ID).Str("dc", rec.DC).Str("by", who).Bool("accept_loss", rec.AcceptLoss).
		Msg("city failover asked for; the leader runs it")
	wait := defaultCityFailoverWait
	if s := req.GetTimeoutSeconds(); s > 0 {
		wait = time.Duration(s) * time.Second
	}
	rec, err = c.wait(ctx, rec, wait)
	if err != nil {
		return nil, err
	}
	if rec.State == cityfail.Failed {
		ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "city failover %s of %s failed: %s", rec.ID, rec.DC, rec.Error)
		return nil, ae.WithMetadata("operation_id", rec.ID)
	}
	return &drplanev1.FailOverDCResponse{Failover: cityFailoverToProto(rec, true)}, nil
}

// start checks the request and stores the failover.
func (c *CityFailover) start(ctx context.Context, who string, req *drplanev1.FailOverDCRequest) (cityfail.Record, error) {
	dc := req.GetDc()
	if dc == "" {
		return cityfail.Record{}, apierr.InvalidArgument("dc", "dc is required")
	}
	if s := req.GetTimeoutSeconds(); s < 0 || s > maxCityFailoverWait {
		return cityfail.Record{}, apierr.InvalidArgument("timeout_seconds", "timeout_seconds must be between 0 and 300")
	}
	topo, err := readTopology(ctx, c.o.Store)
	if err != nil {
		return cityfail.Record{}, err
	}
	if _, ok := topo.DC(dc); !ok {
		return cityfail.Record{}, notFound("dc", "DC", dc)
	}
	leases, _, err := c.o.Store.DCLeases(ctx)
	if err != nil {
		return cityfail.Record{}, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the DC leases from etcd")
	}
	if l, ok := leases[dc]; ok {
		ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			"DC %s is not lost: its HA agent %s holds its lease; move its shards with an evacuation (no write lost) instead", dc, l.Agent)
		ae.Field = "dc"
		return cityfail.Record{}, ae
	}
	all, err := cityfail.List(ctx, c.o.Store)
	if err != nil {
		return cityfail.Record{}, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the city failovers from etcd")
	}
	for _, rec := range all {
		if rec.DC != dc {
			continue
		}
		if rec.State.Unfinished() {
			ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "city failover %s of %s is %s: wait for it (drctl failovers show %s)",
				rec.ID, dc, rec.State, rec.ID)
			ae.Field = "dc"
			return cityfail.Record{}, ae.WithMetadata("operation_id", rec.ID)
		}
		if rec.State == cityfail.Held {
			return c.resume(ctx, who, rec, req)
		}
	}
	n, err := cityfail.Owned(ctx, c.o.Store, dc)
	if err != nil {
		return cityfail.Record{}, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the shard maps from etcd")
	}
	if n == 0 {
		ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "DC %s owns no shard: nothing to fail over", dc)
		ae.Field = "dc"
		return cityfail.Record{}, ae
	}
	fr := cityfail.Request{DC: dc, Operator: who, AcceptLoss: req.GetAcceptLoss(), Reason: strings.TrimSpace(req.GetReason())}
	// The leader's liveness verdict, when it has one, bounds the loss window.
	if s, _, err := state.Get[dclive.Status](ctx, c.o.Store, dclive.StatusKey(c.o.Store, dc)); err == nil {
		fr.Verdict, fr.LeaseGoneSince, fr.LastSeen = string(s.Code), s.LeaseGoneSince, s.LastSeen
	}
	rec := cityfail.NewRecord(fr, who, c.o.Now())
	rec, err = cityfail.Create(ctx, c.o.Store, nil, rec)
	if err != nil {
		return rec, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the city failover in etcd")
	}
	return rec, nil
}

// resume sets a held failover PENDING again as the operator's.
func (c *CityFailover) resume(ctx context.Context, who string, rec cityfail.Record, req *drplanev1.FailOverDCRequest) (cityfail.Record, error) {
	rec.State, rec.Trigger, rec.AcceptLoss, rec.FinishedAt = cityfail.Pending, "operator:"+who, req.GetAcceptLoss(), time.Time{}
	if r := strings.TrimSpace(req.GetReason()); r != "" {
		rec.Reason = r
	}
	rev, err := state.Put(ctx, c.o.Store, cityfail.Key(c.o.Store, rec.ID), rec, state.PutOptions{PrevRev: rec.Revision})
	switch {
	case errors.Is(err, state.ErrConflict):
		ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "city failover %s changed meanwhile: ask again", rec.ID)
		return rec, ae.WithMetadata("operation_id", rec.ID)
	case err != nil:
		return rec, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the city failover in etcd")
	}
	rec.Revision = rev
	return rec, nil
}

// wait follows rec until the leader finished it, at most d.
func (c *CityFailover) wait(ctx context.Context, rec cityfail.Record, d time.Duration) (cityfail.Record, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	from := rec.Revision + 1
	for rec.State.Unfinished() {
		for ev := range state.Watch[cityfail.Record](wctx, c.o.Store, cityfail.Key(c.o.Store, rec.ID), false, from) {
			from = ev.Rev + 1
			if ev.Deleted {
				return rec, notFound("id", "city failover", rec.ID)
			}
			rec = ev.Value
			rec.Revision = ev.Rev
			if !rec.State.Unfinished() {
				return rec, nil
			}
		}
		if ctx.Err() != nil {
			return rec, ctx.Err()
		}
		if wctx.Err() != nil {
			ae := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
				"city failover %s is still %s after %s: it stays stored and the leader runs it (drctl failovers show %s)", rec.ID, rec.State, d, rec.ID)
			return rec, ae.WithMetadata("operation_id", rec.ID)
		}
	}
	return rec, nil
}

// ListCityFailovers returns city failovers newest first.
func (c *CityFailover) ListCityFailovers(ctx context.Context, req *drplanev1.ListCityFailoversRequest) (*drplanev1.ListCityFailoversResponse, error) {
	all, err := cityfail.List(ctx, c.o.Store)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the city failovers from etcd")
	}
	out := &drplanev1.ListCityFailoversResponse{}
	for i := len(all) - 1; i >= 0; i-- {
		if dc := req.GetDc(); dc == "" || all[i].DC == dc {
			out.Failovers = append(out.Failovers, cityFailoverToProto(all[i], false))
		}
	}
	return out, nil
}

// GetCityFailover returns one city failover with its shards.
func (c *CityFailover) GetCityFailover(ctx context.Context, req *drplanev1.GetCityFailoverRequest) (*drplanev1.GetCityFailoverResponse, error) {
	if req.GetId() == "" {
		return nil, apierr.InvalidArgument("id", "id is required")
	}
	rec, err := cityfail.Get(ctx, c.o.Store, req.GetId())
	switch {
	case errors.Is(err, cityfail.ErrNotFound):
		return nil, notFound("id", "city failover", req.GetId())
	case err != nil:
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the city failover from etcd")
	}
	return &drplanev1.GetCityFailoverResponse{Failover: cityFailoverToProto(rec, true)}, nil
}
