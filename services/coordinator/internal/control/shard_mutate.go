package control

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// MoveShard changes a shard's owner (and backup) DC: by default through
// the safe handoff (a move_shard operation the leader runs), with force
// (or when the owner stays) as the raw map change through the queue.
func (s *Shards) MoveShard(ctx context.Context, req *drplanev1.MoveShardRequest) (*drplanev1.MoveShardResponse, error) {
	if !req.GetForce() && s.o.Operations != nil {
		if e, err := s.entry(req.GetKeyspace()); err == nil {
			if cur, ok := e.Map.Shard(int(req.GetShard())); ok && req.GetShard() >= 0 && cur.Owner != req.GetOwnerDc() {
				return s.safeMove(ctx, req)
			}
		}
	}
	m, err := s.mutate(ctx, req, ops.KindMoveShard, func() (ops.Params, error) {
		p, err := s.checkMove(req)
		p.Force = req.GetForce()
		return p, err
	})
	if err != nil {
		return nil, err
	}
	return &drplanev1.MoveShardResponse{Mutation: m}, nil
}

// SetShardState freezes, unfreezes or marks a shard moving, through the
// leader.
func (s *Shards) SetShardState(ctx context.Context, req *drplanev1.SetShardStateRequest) (*drplanev1.SetShardStateResponse, error) {
	m, err := s.mutate(ctx, req, ops.KindSetShardState, func() (ops.Params, error) { return s.checkShardState(req) })
	if err != nil {
		return nil, err
	}
	return &drplanev1.SetShardStateResponse{Mutation: m}, nil
}

// SetDCState sets a DC's administrative state through the leader.
func (s *Shards) SetDCState(ctx context.Context, req *drplanev1.SetDCStateRequest) (*drplanev1.SetDCStateResponse, error) {
	m, err := s.mutate(ctx, req, ops.KindSetDCState, func() (ops.Params, error) { return s.checkDCState(req) })
	if err != nil {
		return nil, err
	}
	return &drplanev1.SetDCStateResponse{Mutation: m}, nil
}

// mutate checks a request, queues its operation and waits for the leader.
// Requests refused before they are queued are audited here; queued ones by
// the leader when it finishes them.
func (s *Shards) mutate(ctx context.Context, req any, kind ops.Kind, check func() (ops.Params, error)) (*drplanev1.Mutation, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	p, err := check()
	if err != nil {
		return nil, s.aud.refused(ctx, who, req, err)
	}
	op, err := s.o.Queue.Submit(ctx, kind, p, who)
	if err != nil {
		return nil, s.aud.queueError(ctx, who, req, err)
	}
	if p.Keyspace != "" && op.Result != nil && op.Result.Changed {
		// Read your writes: answer once this coordinator's routing cache
		// holds the new map (normally a few milliseconds), so that a Route
		// sent here next sees the change.
		wctx, cancel := context.WithTimeout(ctx, cacheCatchUp)
		if !s.o.Cache.WaitMap(wctx, p.Keyspace, op.Revision) {
			s.o.Logger.Warn().Str("op", op.ID).Int64("revision", op.Revision).Msg("routing cache did not catch up with an applied change in time")
		}
		cancel()
	}
	return &drplanev1.Mutation{OperationId: op.ID, Revision: op.Revision, Leader: op.Leader}, nil
}

// cacheCatchUp bounds how long a mutation's answer waits for the routing
// cache to hold the change.
const cacheCatchUp = 2 * time.Second

// reason checks and trims a mutation's reason.
func reason(r string) (string, error) {
	r = strings.TrimSpace(r)
	if r == "" {
		return "", apierr.InvalidArgument("reason", "a reason is required: say why (it is audited)")
	}
	return r, nil
}

// shardID checks a shard id from a request.
func shardID(id int32) (int, error) {
	if id < 0 {
		return 0, apierr.InvalidArgument("shard", fmt.Sprintf("shard %d is negative", id))
	}
	return int(id), nil
}

// checkMove validates a MoveShardRequest against the cached state, with the
// rules the leader applies.
func (s *Shards) checkMove(req *drplanev1.MoveShardRequest) (ops.Params, error) {
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return ops.Params{}, err
	}
	id, err := shardID(req.GetShard())
	if err != nil {
		return ops.Params{}, err
	}
	r, err := reason(req.GetReason())
	if err != nil {
		return ops.Params{}, err
	}
	p := ops.Params{Keyspace: req.GetKeyspace(), Shard: id, Owner: req.GetOwnerDc(), Backup: req.GetBackupDc(), Reason: r}
	t, err := s.topology()
	if err != nil {
		return ops.Params{}, err
	}
	if _, _, err := ops.MoveShard(e.Map, t, p); err != nil {
		return ops.Params{}, err
	}
	return p, nil
}

func (s *Shards) checkShardState(req *drplanev1.SetShardStateRequest) (ops.Params, error) {
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return ops.Params{}, err
	}
	id, err := shardID(req.GetShard())
	if err != nil {
		return ops.Params{}, err
	}
	st, ok := shardStateFromProto(req.GetState())
	if !ok {
		return ops.Params{}, apierr.InvalidArgument("state", "state must be SHARD_STATE_ACTIVE, SHARD_STATE_FROZEN or SHARD_STATE_MOVING")
	}
	r, err := reason(req.GetReason())
	if err != nil {
		return ops.Params{}, err
	}
	p := ops.Params{Keyspace: req.GetKeyspace(), Shard: id, ShardState: st, Reason: r}
	t, err := s.topology()
	if err != nil {
		return ops.Params{}, err
	}
	if _, err := ops.SetShardState(e.Map, t, p); err != nil {
		return ops.Params{}, err
	}
	return p, nil
}

func (s *Shards) checkDCState(req *drplanev1.SetDCStateRequest) (ops.Params, error) {
	if req.GetDc() == "" {
		return ops.Params{}, apierr.InvalidArgument("dc", "dc is required")
	}
	st := topology.DCState(strings.ToUpper(strings.TrimSpace(req.GetState())))
	if st == "" {
		return ops.Params{}, apierr.InvalidArgument("state", "state is required: ACTIVE, DRAINING, EVACUATED or DOWN")
	}
	r, err := reason(req.GetReason())
	if err != nil {
		return ops.Params{}, err
	}
	t, err := s.topology()
	if err != nil {
		return ops.Params{}, err
	}
	p := ops.Params{DC: req.GetDc(), DCState: st, Reason: r}
	if _, err := ops.SetDCState(t, p); err != nil {
		return ops.Params{}, err
	}
	return p, nil
}

func shardStateFromProto(s drplanev1.ShardState) (shardmap.State, bool) {
	switch s {
	case drplanev1.ShardState_SHARD_STATE_ACTIVE:
		return shardmap.Active, true
	case drplanev1.ShardState_SHARD_STATE_FROZEN:
		return shardmap.Frozen, true
	case drplanev1.ShardState_SHARD_STATE_MOVING:
		return shardmap.Moving, true
	}
	return "", false
}

// shardStateName is the state without its enum prefix, e.g. "FROZEN".
func shardStateName(s drplanev1.ShardState) string {
	return strings.TrimPrefix(s.String(), "SHARD_STATE_")
}
