package control

import (
	"context"
	"fmt"
	"time"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
)

// Bounds of MoveShardRequest.timeout_seconds.
const (
	defaultMoveTimeout = 60
	maxMoveTimeout     = 300
)

// safeMove stores a move_shard operation (one handoff) and waits, up to
// timeout_seconds, for the leader to finish it.
func (s *Shards) safeMove(ctx context.Context, req *drplanev1.MoveShardRequest) (*drplanev1.MoveShardResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := s.aud.newEvent(who, req)
	op, wait, err := s.planMove(req, who)
	if err != nil {
		s.aud.finish(ctx, ev, err)
		return nil, err
	}
	created, err := s.o.Operations.Create(ctx, op)
	if err != nil {
		err = apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "store the move in etcd")
		s.aud.finish(ctx, ev, err)
		return nil, err
	}
	ev.Params["operation_id"] = created.ID
	ev.Params["safe"] = "true"
	s.aud.finish(ctx, ev, nil)
	done, err := s.follow(ctx, created, wait)
	if err != nil {
		return nil, err
	}
	h := done.Handoffs[0]
	if h.Revision > 0 {
		wctx, cancel := context.WithTimeout(ctx, cacheCatchUp)
		s.o.Cache.WaitMap(wctx, req.GetKeyspace(), h.Revision)
		cancel()
	}
	return &drplanev1.MoveShardResponse{Mutation: &drplanev1.Mutation{OperationId: done.ID, Revision: h.Revision, Leader: done.Leader}}, nil
}

// planMove checks the request as the raw move does, and refuses a shard
// that is frozen.
func (s *Shards) planMove(req *drplanev1.MoveShardRequest, who string) (evac.Operation, time.Duration, error) {
	t := req.GetTimeoutSeconds()
	if t < 0 || t > maxMoveTimeout {
		return evac.Operation{}, 0, apierr.InvalidArgument("timeout_seconds",
			fmt.Sprintf("timeout_seconds must be between 1 and %d (0 means %d), got %d", maxMoveTimeout, defaultMoveTimeout, t))
	}
	if t == 0 {
		t = defaultMoveTimeout
	}
	p, err := s.checkMove(req)
	if err != nil {
		return evac.Operation{}, 0, err
	}
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return evac.Operation{}, 0, err
	}
	topo, err := s.topology()
	if err != nil {
		return evac.Operation{}, 0, err
	}
	_, backup, err := ops.MoveShard(e.Map, topo, p)
	if err != nil {
		return evac.Operation{}, 0, err
	}
	cur, _ := e.Map.Shard(p.Shard)
	if cur.State == shardmap.Frozen {
		by := cur.FrozenBy
		if by == "" || by == shardmap.FrozenByOperator {
			by = "an operator"
		}
		return evac.Operation{}, 0, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Field: ops.FieldShard,
			Message: fmt.Sprintf("shard %s/%d is frozen by %s: unfreeze it first, or move it with force", p.Keyspace, p.Shard, by)}
	}
	now := s.o.Now().UTC()
	w := evac.World{Topo: topo, Maps: map[string]shardmap.Map{p.Keyspace: e.Map}}
	plan := evac.PlanMove(w, p.Keyspace, p.Shard, p.Owner, backup)
	return evac.Operation{ID: evac.NewID(evac.KindMoveShard, now), Kind: evac.KindMoveShard, DC: cur.Owner, To: p.Owner, Parallel: 1,
		State: evac.Pending, RequestedBy: who, Reason: p.Reason, CreatedAt: now, Handoffs: plan.Handoffs, Targets: plan.Targets}, time.Duration(t) * time.Second, nil
}

// follow waits for op to end, at most wait (and less than ctx allows).
func (s *Shards) follow(ctx context.Context, op evac.Operation, wait time.Duration) (evac.Operation, error) {
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-500*time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	defer cancel()
	cur, from := op, op.Revision+1
	for cur.State.Unfinished() && wctx.Err() == nil {
		for ev := range s.o.Operations.Watch(wctx, op.ID, from) {
			from = ev.Rev + 1
			if ev.Deleted {
				return cur, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT, "operation %s was deleted", op.ID)
			}
			cur = ev.Value
			cur.Revision = ev.Rev
			if !cur.State.Unfinished() {
				break
			}
		}
		if cur.State.Unfinished() && wctx.Err() == nil {
			got, err := s.o.Operations.Get(wctx, op.ID)
			if err == nil {
				cur, from = got, got.Revision+1
			}
		}
	}
	switch {
	case cur.State == evac.Succeeded:
		return cur, nil
	case cur.State.Unfinished() && ctx.Err() != nil:
		return cur, ctx.Err()
	case cur.State.Unfinished():
		return cur, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			"the move (operation %s) did not finish within %s; it goes on: drctl operations watch %s", op.ID, wait.Round(time.Second), op.ID).
			WithMetadata(ops.MetaOperationID, op.ID)
	}
	msg := cur.Error
	if len(cur.Handoffs) > 0 && cur.Handoffs[0].Error != "" {
		msg = cur.Handoffs[0].Error
	}
	err := apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the move (operation %s) ended %s: %s; the shard stays at %s, unfrozen",
		op.ID, cur.State, msg, op.DC)
	return cur, err.WithMetadata(ops.MetaOperationID, op.ID)
}
