package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// Switchover waiting bounds and ListFailovers limits.
const (
	DefaultSwitchoverTimeout = 30 * time.Second
	MaxSwitchoverTimeout     = 300 * time.Second
	DefaultFailoverLimit     = 50
	MaxFailoverLimit         = 1000
)

// ErrorInfo metadata keys of switchover errors.
const (
	// MetaIntentID names the switchover intent an error is about.
	MetaIntentID = "intent_id"
	// MetaState is the intent's state when the error was raised.
	MetaState = "state"
	// MetaRecordID names the failover record of a failed switchover.
	MetaRecordID = "record_id"
)

// rewatchDelay is how long Switchover waits before following an intent
// again after its etcd watch broke (lost leader, compaction).
const rewatchDelay = 200 * time.Millisecond

// FailoverOptions configures a Failover service.
type FailoverOptions struct {
	Store *state.Store
	// Queue carries kill-switch changes to the leader.
	Queue *ops.Queue
	// Source names this coordinator process in audit event ids; it must be
	// unique among the processes writing to the outbox (the service id).
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox (auditlog.Refusals aggregates them per
	// caller).
	Denied EventWriter
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Failover serves FailoverService: switchover requests (carried out by the
// DC's HA agent through a switchover intent in etcd), failover records and
// kill switches (changed through the operations queue, by the leader).
// Every mutating call is audited through the etcd outbox.
type Failover struct {
	drplanev1.UnimplementedFailoverServiceServer
	o   FailoverOptions
	aud *auditor
}

// NewFailover returns the service.
func NewFailover(o FailoverOptions) *Failover {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &Failover{o: o, aud: newAuditor(o.Store, o.Denied, o.Source, o.Now, o.Logger, describe)}
}

// caller returns the authenticated caller's token name.
func caller(ctx context.Context) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Name == "" {
		return "", apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "no authenticated caller")
	}
	return p.Name, nil
}

// readTopology returns the stored topology as an API error when missing.
func readTopology(ctx context.Context, st *state.Store) (topology.Topology, error) {
	t, _, err := st.Topology(ctx)
	if errors.Is(err, state.ErrNotFound) {
		return t, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology stored in etcd yet")
	}
	if err != nil {
		return t, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read topology from etcd")
	}
	return t, nil
}

// notFound is NotFound naming the request field.
func notFound(field, what, name string) *apierr.Error {
	e := apierr.NotFound(what, name)
	e.Field = field
	return e
}

// lookupCluster checks dc and cluster against the topology.
func (f *Failover) lookupCluster(ctx context.Context, dc, cluster string) (topology.Cluster, error) {
	switch {
	case dc == "":
		return topology.Cluster{}, apierr.InvalidArgument("dc", "dc is required")
	case cluster == "":
		return topology.Cluster{}, apierr.InvalidArgument("cluster", "cluster is required")
	}
	t, err := readTopology(ctx, f.o.Store)
	if err != nil {
		return topology.Cluster{}, err
	}
	if _, ok := t.DC(dc); !ok {
		return topology.Cluster{}, notFound("dc", "dc", dc)
	}
	cl, ok := t.Cluster(dc, cluster)
	if !ok {
		return topology.Cluster{}, notFound("cluster", "cluster", dc+"/"+cluster)
	}
	return cl, nil
}

// switchoverTimeout turns timeout_seconds into the wait.
func switchoverTimeout(secs int32) (time.Duration, error) {
	d := time.Duration(secs) * time.Second
	switch {
	case secs == 0:
		return DefaultSwitchoverTimeout, nil
	case secs < 0 || d > MaxSwitchoverTimeout:
		return 0, apierr.InvalidArgument("timeout_seconds", fmt.Sprintf("timeout_seconds must be between 1 and %d (0 means %d)",
			int(MaxSwitchoverTimeout.Seconds()), int(DefaultSwitchoverTimeout.Seconds())))
	}
	return d, nil
}

// Switchover records a switchover intent for the DC's HA agent and waits
// until the agent finished it or the timeout passed.
func (f *Failover) Switchover(ctx context.Context, req *drplanev1.SwitchoverRequest) (*drplanev1.SwitchoverResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := f.aud.newEvent(who, req)
	resp, err := f.switchover(ctx, who, req, ev)
	f.aud.finish(ctx, ev, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (f *Failover) switchover(ctx context.Context, who string, req *drplanev1.SwitchoverRequest, ev *audit.Event) (*drplanev1.SwitchoverResponse, error) {
	timeout, err := switchoverTimeout(req.GetTimeoutSeconds())
	if err != nil {
		return nil, err
	}
	dc, name := req.GetDc(), req.GetCluster()
	cl, err := f.lookupCluster(ctx, dc, name)
	if err != nil {
		return nil, err
	}
	if to := req.GetTo(); to != "" {
		if err := checkTarget(cl, to); err != nil {
			return nil, err
		}
	}
	now := f.o.Now()
	in := state.SwitchoverIntent{
		ID: "so-" + state.NewRecordID(now, dc, name), DC: dc, Cluster: name, To: req.GetTo(),
		RequestedBy: who, RequestedAt: now.UTC(), State: state.SwitchoverPending,
	}
	rev, err := f.o.Store.CreateSwitchover(ctx, in)
	if errors.Is(err, state.ErrConflict) {
		return nil, f.conflict(ctx, dc, name, err)
	}
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the switchover intent in etcd")
	}
	ev.Params[MetaIntentID] = in.ID
	f.o.Logger.Info().Str("intent", in.ID).Str("cluster", dc+"/"+name).Str("to", in.To).Str("by", who).Msg("switchover requested")

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	final, err := f.await(wctx, in, rev)
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			return nil, timedOut(final, timeout)
		}
		return nil, err
	}
	if final.State == state.SwitchoverFailed {
		e := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "switchover %s of %s/%s failed: %s",
			final.ID, dc, name, orUnknown(final.Error)).WithMetadata(MetaIntentID, final.ID)
		if final.RecordID != "" {
			e = e.WithMetadata(MetaRecordID, final.RecordID)
		}
		return nil, e
	}
	resp := &drplanev1.SwitchoverResponse{Intent: intentToProto(final)}
	if rec, ok := f.findRecord(ctx, final); ok {
		resp.Record = recordToProto(rec)
		ev.RTOMillis = time.Duration(rec.RTO).Milliseconds()
		ev.RPOTransactions = rec.RPOTransactions
	}
	return resp, nil
}

// checkTarget checks that to is a promotable instance of cl.
func checkTarget(cl topology.Cluster, to string) error {
	for _, in := range cl.Instances {
		if in.Name != to {
			continue
		}
		if in.NoMaster {
			return apierr.InvalidArgument("to", fmt.Sprintf("instance %q is marked no_master and is never promoted", to))
		}
		return nil
	}
	return apierr.InvalidArgument("to", fmt.Sprintf("instance %q is not part of cluster %s/%s", to, cl.DC, cl.Name))
}

// conflict explains why an intent could not be created.
func (f *Failover) conflict(ctx context.Context, dc, cluster string, cause error) error {
	cur, _, err := f.o.Store.Switchover(ctx, dc, cluster)
	if err == nil && !finished(cur.State) {
		return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS,
			"switchover %s of %s/%s is already %s (requested by %s at %s); wait for it to finish",
			cur.ID, dc, cluster, cur.State, orUnknown(cur.RequestedBy), cur.RequestedAt.UTC().Format(time.RFC3339)).
			WithMetadata(MetaIntentID, cur.ID).WithMetadata(MetaState, string(cur.State))
	}
	return apierr.Wrap(cause, drplanev1.ErrorCode_ERROR_CODE_CONFLICT,
		fmt.Sprintf("another switchover request for %s/%s changed the intent at the same time; retry", dc, cluster))
}

func finished(s state.SwitchoverState) bool {
	return s == state.SwitchoverDone || s == state.SwitchoverFailed
}

// timedOut is the error for an intent that did not finish in time.
func timedOut(cur state.SwitchoverIntent, timeout time.Duration) error {
	hint := "the HA agent may still carry it out: check drctl failovers"
	if cur.State == state.SwitchoverPending {
		hint = "no HA agent took it up (is the DC's haagent running?); it runs when one does"
	}
	return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, "switchover %s of %s/%s is still %s after %s; %s",
		cur.ID, cur.DC, cur.Cluster, cur.State, timeout, hint).
		WithMetadata(MetaIntentID, cur.ID).WithMetadata(MetaState, string(cur.State))
}

// await follows the intent want, created at revision rev, until the agent
// set it DONE or FAILED, and returns it. When ctx ends it returns the last
// state seen with ctx's error.
func (f *Failover) await(ctx context.Context, want state.SwitchoverIntent, rev int64) (state.SwitchoverIntent, error) {
	key := f.o.Store.SwitchoverKey(want.DC, want.Cluster)
	cur := want
	gone := func() error {
		return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT,
			"switchover %s of %s/%s was removed or replaced before it finished; check drctl failovers", want.ID, want.DC, want.Cluster).
			WithMetadata(MetaIntentID, want.ID)
	}
	for {
		for ev := range f.o.Store.WatchSwitchovers(ctx, want.DC, rev) {
			if ev.Key != key {
				continue
			}
			rev = ev.Rev + 1
			if ev.Deleted || ev.Value.ID != want.ID {
				return cur, gone()
			}
			cur = ev.Value
			if finished(cur.State) {
				return cur, nil
			}
		}
		// The watch ended: either ctx did, or the watch broke. Re-read the
		// intent (events may have been compacted away) and follow it again.
		if err := ctx.Err(); err != nil {
			return cur, err
		}
		got, modRev, err := f.o.Store.Switchover(ctx, want.DC, want.Cluster)
		switch {
		case errors.Is(err, state.ErrNotFound):
			return cur, gone()
		case err == nil && got.ID != want.ID:
			return cur, gone()
		case err == nil:
			cur, rev = got, modRev+1
			if finished(cur.State) {
				return cur, nil
			}
		}
		if !retry.Sleep(ctx, rewatchDelay) {
			return cur, ctx.Err()
		}
	}
}

// findRecord reads the failover record a finished intent names. A record
// that cannot be read is logged, not returned as an error: the switchover
// itself is done.
func (f *Failover) findRecord(ctx context.Context, in state.SwitchoverIntent) (state.FailoverRecord, bool) {
	if in.RecordID == "" {
		f.o.Logger.Warn().Str("intent", in.ID).Msg("finished switchover intent names no failover record")
		return state.FailoverRecord{}, false
	}
	recs, err := f.o.Store.Failovers(ctx, in.DC, in.Cluster)
	if err != nil {
		f.o.Logger.Warn().Err(err).Str("intent", in.ID).Str("record", in.RecordID).Msg("read failover record")
		return state.FailoverRecord{}, false
	}
	for _, r := range recs {
		if r.ID == in.RecordID {
			return r, true
		}
	}
	f.o.Logger.Warn().Str("intent", in.ID).Str("record", in.RecordID).Msg("failover record named by the intent not found")
	return state.FailoverRecord{}, false
}

// ListFailovers returns failover and switchover records, newest first.
func (f *Failover) ListFailovers(ctx context.Context, req *drplanev1.ListFailoversRequest) (*drplanev1.ListFailoversResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultFailoverLimit
	case limit < 0 || limit > MaxFailoverLimit:
		return nil, apierr.InvalidArgument("limit", fmt.Sprintf("limit must be between 1 and %d (0 means %d)", MaxFailoverLimit, DefaultFailoverLimit))
	}
	dc, cluster := req.GetDc(), req.GetCluster()
	if dc != "" || cluster != "" {
		if err := f.checkFilter(ctx, dc, cluster); err != nil {
			return nil, err
		}
	}
	recs, err := f.o.Store.Failovers(ctx, dc, cluster)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read failover records from etcd")
	}
	if dc == "" && cluster != "" {
		kept := recs[:0]
		for _, r := range recs {
			if r.Cluster == cluster {
				kept = append(kept, r)
			}
		}
		recs = kept
	}
	sortNewestFirst(recs)
	resp := &drplanev1.ListFailoversResponse{}
	for _, r := range recs[:min(limit, len(recs))] {
		resp.Records = append(resp.Records, recordToProto(r))
	}
	return resp, nil
}

// checkFilter checks ListFailovers' dc and cluster against the topology.
func (f *Failover) checkFilter(ctx context.Context, dc, cluster string) error {
	t, err := readTopology(ctx, f.o.Store)
	if err != nil {
		return err
	}
	if dc != "" {
		if _, ok := t.DC(dc); !ok {
			return notFound("dc", "dc", dc)
		}
	}
	if cluster == "" {
		return nil
	}
	for _, cl := range t.Clusters {
		if cl.Name == cluster && (dc == "" || cl.DC == dc) {
			return nil
		}
	}
	if dc != "" {
		return notFound("cluster", "cluster", dc+"/"+cluster)
	}
	return notFound("cluster", "cluster", cluster)
}

// sortNewestFirst orders records by start time, newest first (ties by id).
func sortNewestFirst(recs []state.FailoverRecord) {
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if !a.StartedAt.Equal(b.StartedAt) {
			return a.StartedAt.After(b.StartedAt)
		}
		return a.ID > b.ID
	})
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// itoa is strconv.Itoa for int32 values.
func itoa(v int32) string { return strconv.Itoa(int(v)) }
