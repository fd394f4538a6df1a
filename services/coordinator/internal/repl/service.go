package repl

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
)

// Ledger is the request ledger as the service reads it
// (*ledger.Ledger). Lookup returns an error matching ledger.ErrNotFound
// for an unknown request.
type Ledger interface {
	Lookup(ctx context.Context, origin, requestID string) (*ledger.Document, error)
	Backlog(ctx context.Context, dc string) (ledger.Backlog, error)
	Retried(ctx context.Context, origin, target string) (int64, error)
}

// Options configure the service.
type Options struct {
	// Store is the etcd state store: topology, collector statistics and
	// watermarks, audit outbox.
	Store *state.Store
	// Ledger answers GetRequest and the backlog; nil when the coordinator
	// has no NATS connection.
	Ledger Ledger
	// NATS reaches every DC's dead-letter stream in its JetStream domain;
	// nil turns the dead-letter calls off.
	NATS *nats.Conn
	// Source names this coordinator in audit events.
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox (auditlog.Refusals aggregates them per
	// caller).
	Denied EventWriter
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service serves ReplicationService.
type Service struct {
	drplanev1.UnimplementedReplicationServiceServer
	o   Options
	aud *auditor
}

// New returns the service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &Service{o: o, aud: newAuditor(o.Store, o.Denied, o.Source, o.Now, o.Logger)}
}

// errOff is the answer of the calls that need NATS on a coordinator
// without it.
func errOff() error {
	return apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
		"replication tracking is off on this coordinator: it has no nats_url configured, so it neither indexes the request ledger nor reaches the dead-letter streams")
}

// readTopology returns the stored topology as an API error when missing.
func (s *Service) readTopology(ctx context.Context) (topology.Topology, error) {
	t, _, err := s.o.Store.Topology(ctx)
	if errors.Is(err, state.ErrNotFound) {
		return t, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology stored in etcd yet")
	}
	if err != nil {
		return t, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read topology from etcd")
	}
	return t, nil
}

// checkDC checks that field names a DC of t.
func checkDC(t topology.Topology, field, dc string) error {
	if dc == "" {
		return apierr.InvalidArgument(field, field+" is required")
	}
	if _, ok := t.DC(dc); !ok {
		e := apierr.NotFound("dc", dc)
		e.Field = field
		return e
	}
	return nil
}

// caller returns the authenticated caller's token name.
func caller(ctx context.Context) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Name == "" {
		return "", apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "no authenticated caller")
	}
	return p.Name, nil
}

// GetReplicationStatus reports every DC pair from the collectors'
// statistics and watermarks in etcd, and every DC's ledger backlog.
func (s *Service) GetReplicationStatus(ctx context.Context, req *drplanev1.GetReplicationStatusRequest) (*drplanev1.GetReplicationStatusResponse, error) {
	t, err := s.readTopology(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetDc() != "" {
		if err := checkDC(t, "dc", req.GetDc()); err != nil {
			return nil, err
		}
	}
	stats, err := s.o.Store.ReplStatsList(ctx, "")
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read replication statistics from etcd")
	}
	marks, err := s.o.Store.Watermarks(ctx, "", "")
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read watermarks from etcd")
	}
	now := s.o.Now()
	type pairKey struct{ origin, target string }
	byPair := map[pairKey]state.ReplStats{}
	for _, st := range stats {
		byPair[pairKey{st.Origin, st.DC}] = st
	}
	// Per pair, the newest watermark move and the newest commit applied.
	moved, committed := map[pairKey]time.Time{}, map[pairKey]time.Time{}
	for _, w := range marks {
		k := pairKey{w.Origin, w.DC}
		if w.AppliedAt.After(moved[k]) {
			moved[k] = w.AppliedAt
		}
		if w.CommitTime.After(committed[k]) {
			committed[k] = w.CommitTime
		}
	}
	dcs := make([]string, 0, len(t.DCs))
	for _, dc := range t.DCs {
		dcs = append(dcs, dc.Name)
	}
	slices.Sort(dcs)
	resp := &drplanev1.GetReplicationStatusResponse{Ledger: s.o.Ledger != nil, GeneratedAt: timestamppb.New(now)}
	for _, origin := range dcs {
		for _, target := range dcs {
			if origin == target || (req.GetDc() != "" && req.GetDc() != origin && req.GetDc() != target) {
				continue
			}
			p := &drplanev1.ReplicationPair{OriginDc: origin, TargetDc: target}
			if st, ok := byPair[pairKey{origin, target}]; ok {
				fillStats(p, st)
			}
			if at, ok := moved[pairKey{origin, target}]; ok {
				p.WatermarkAge = durationpb.New(max(0, now.Sub(at)))
			}
			p.WatermarkCommitTime = tsOrNil(committed[pairKey{origin, target}])
			resp.Pairs = append(resp.Pairs, p)
		}
	}
	if s.o.Ledger != nil {
		if err := s.ledgerCounts(ctx, resp, dcs, req.GetDc()); err != nil {
			s.o.Logger.Warn().Err(err).Msg("replication status without the ledger: its store is unavailable")
			resp.Ledger = false
			resp.Backlog = nil
			for _, p := range resp.Pairs {
				p.Retried = 0
			}
		}
	}
	return resp, nil
}

// ledgerCounts adds the retried counts and the backlogs.
func (s *Service) ledgerCounts(ctx context.Context, resp *drplanev1.GetReplicationStatusResponse, dcs []string, only string) error {
	for _, p := range resp.Pairs {
		n, err := s.o.Ledger.Retried(ctx, p.GetOriginDc(), p.GetTargetDc())
		if err != nil {
			return err
		}
		p.Retried = uint64(max(0, n))
	}
	for _, dc := range dcs {
		if only != "" && dc != only {
			continue
		}
		b, err := s.o.Ledger.Backlog(ctx, dc)
		if err != nil {
			return err
		}
		resp.Backlog = append(resp.Backlog, &drplanev1.LedgerBacklog{
			Dc: dc, Backlog: uint64(max(0, b.Pending+b.DeadLettered)), Pending: uint64(max(0, b.Pending)),
			DeadLettered: uint64(max(0, b.DeadLettered)), OldestPendingCapturedAt: tsOrNil(b.OldestPending),
		})
	}
	return nil
}

func fillStats(p *drplanev1.ReplicationPair, st state.ReplStats) {
	p.Reporting = true
	p.Collector = st.Collector
	p.LagP50Ms, p.LagP99Ms, p.EventsPerSec = st.LagP50Ms, st.LagP99Ms, st.EventsPerSec
	p.Pending, p.Applied, p.DeadLettered = st.Pending, st.Applied, st.DeadLettered
	p.Duplicates, p.Redelivered = st.Duplicates, st.Redelivered
	p.LastAppliedAt = tsOrNil(st.LastAppliedAt)
	p.UpdatedAt = tsOrNil(st.UpdatedAt)
}

func tsOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// GetRequest returns a request's ledger record.
func (s *Service) GetRequest(ctx context.Context, req *drplanev1.GetRequestRequest) (*drplanev1.GetRequestResponse, error) {
	if req.GetRequestId() == "" {
		return nil, apierr.InvalidArgument("request_id", "request_id is required (\"<gtid>/<shard>\", e.g. 1-101-42/7)")
	}
	t, err := s.readTopology(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkDC(t, "origin_dc", req.GetOriginDc()); err != nil {
		return nil, err
	}
	if s.o.Ledger == nil {
		return nil, errOff()
	}
	d, err := s.o.Ledger.Lookup(ctx, req.GetOriginDc(), req.GetRequestId())
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND,
			"request %q not in the ledger: not captured in %s, or its facts not indexed yet",
			ledger.DocID(req.GetOriginDc(), req.GetRequestId()), req.GetOriginDc())
	case err != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the ledger store is unavailable")
	}
	return &drplanev1.GetRequestResponse{Record: d.Record()}, nil
}
