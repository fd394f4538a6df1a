package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// maxAttempts bounds how often one operation is re-planned after the
// object it changes moved under it; then it fails with CONFLICT.
const maxAttempts = 5

// Run applies the queue whenever this coordinator leads, until ctx ends
// (it then returns nil).
func (q *Queue) Run(ctx context.Context) error {
	for {
		term, err := q.o.Leader.Await(ctx)
		if err != nil {
			return nil //nolint:nilerr // ctx ended: a clean stop
		}
		tctx, cancel := term.Context(ctx)
		err = q.lead(tctx, term.Fence)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			q.o.Logger.Warn().Err(err).Int64("fence", term.Fence.Rev).Msg("operations queue: applying stopped; resuming")
			if !retry.Sleep(ctx, q.o.RetryDelay) {
				return nil
			}
		}
	}
}

// lead applies pending operations oldest first and then every new one as
// it is queued, until ctx ends (the term or the process) or the fence is
// lost.
func (q *Queue) lead(ctx context.Context, fence state.Fence) error {
	q.o.Logger.Info().Int64("fence", fence.Rev).Msg("operations queue: leading, applying pending operations")
	prune := time.NewTicker(q.o.PruneEvery)
	defer prune.Stop()
	for {
		rev, err := q.drain(ctx, fence)
		if err != nil {
			return err
		}
		events := state.Watch[Op](ctx, q.o.Store, q.prefix, true, rev+1)
	follow:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					break follow
				}
				if ev.Deleted || ev.Value.State != Pending {
					continue
				}
				op := ev.Value
				op.Revision = ev.Rev
				if err := q.apply(ctx, fence, op); err != nil {
					return err
				}
			case <-prune.C:
				if err := q.prune(ctx, fence); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// The watch broke: read the whole queue again.
		if !retry.Sleep(ctx, q.o.RetryDelay) {
			return nil
		}
	}
}

// drain applies every PENDING operation, oldest first, prunes old finished
// ones, and returns the revision the queue was read at.
func (q *Queue) drain(ctx context.Context, fence state.Fence) (int64, error) {
	all, rev, err := q.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, op := range all {
		if op.State != Pending {
			continue
		}
		if err := q.apply(ctx, fence, op); err != nil {
			return 0, err
		}
	}
	if err := q.pruneList(ctx, fence, all); err != nil {
		return 0, err
	}
	return rev, nil
}

// change is what applying one operation writes, as planned from the state
// it read.
type change struct {
	// cmps guard the objects the change was computed from.
	cmps []clientv3.Cmp
	// writes change the objects.
	writes []clientv3.Op
	result *Result
	// fail, when set, rejects the operation: it is written FAILED and
	// nothing else changes.
	fail error
}

// apply finishes op: it plans the change from the current state and
// commits it with the operation record in one fenced transaction. An error
// means the leader must stop (fence lost) or retry later (etcd failed).
func (q *Queue) apply(ctx context.Context, fence state.Fence, op Op) error {
	for attempt := 1; ; attempt++ {
		ch, err := q.plan(ctx, op)
		if err != nil {
			return err
		}
		if ch.fail == nil && attempt > maxAttempts {
			ch = change{fail: apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_CONFLICT,
				"the objects this operation changes kept changing under it (%d attempts)", maxAttempts)}
		}
		ok, err := q.commit(ctx, fence, op, ch)
		if err != nil || ok {
			return err
		}
		// The transaction lost a comparison: find out which.
		held, cur, err := q.recheck(ctx, fence, op.ID)
		switch {
		case err != nil:
			return err
		case !held:
			return fmt.Errorf("%w: %s is no longer held at revision %d", errFenced, fence.Key, fence.Rev)
		case cur == nil || cur.State != Pending:
			return nil // finished (or removed) meanwhile: nothing to do
		}
		op = *cur
	}
}

// recheck reads the fence and the operation after a failed transaction.
func (q *Queue) recheck(ctx context.Context, fence state.Fence, id string) (held bool, cur *Op, err error) {
	resp, err := q.o.Store.Client().Txn(ctx).Then(clientv3.OpGet(fence.Key), clientv3.OpGet(q.Key(id))).Commit()
	if err != nil {
		return false, nil, fmt.Errorf("ops: re-read fence and operation %s: %w", id, err)
	}
	fk := resp.Responses[0].GetResponseRange().GetKvs()
	held = len(fk) == 1 && fk[0].CreateRevision == fence.Rev
	ok := resp.Responses[1].GetResponseRange().GetKvs()
	if len(ok) == 1 {
		var op Op
		if err := json.Unmarshal(ok[0].Value, &op); err == nil {
			op.Revision = ok[0].ModRevision
			cur = &op
		}
	}
	return held, cur, nil
}

// commit writes the change with the finished record and its audit event.
func (q *Queue) commit(ctx context.Context, fence state.Fence, op Op, ch change) (bool, error) {
	now := q.o.Now()
	done := op
	done.Leader, done.Fence, done.FinishedAt, done.Result = q.o.Leader.ID(), fence.Rev, now.UTC(), ch.result
	done.State = Done
	writes := ch.writes
	if ch.fail != nil {
		e, _ := apierr.FromError(ch.fail)
		done.State, done.Code, done.Field, done.Error = Failed, apierr.Reason(e.Code), e.Field, e.Message
		writes = nil
	}
	data, err := json.Marshal(done)
	if err != nil {
		return false, fmt.Errorf("ops: encode %s: %w", op.ID, err)
	}
	ev := audit.Event{
		ID: audit.NewID(now, q.o.Leader.ID()+"/ops", q.seq.Add(1)), Time: now.UTC(),
		Actor: "token:" + op.RequestedBy, Action: done.Action(), Target: done.Target(), Params: done.AuditParams(),
		Outcome: audit.OutcomeOK,
	}
	if done.State == Failed {
		ev.Outcome, ev.Error = audit.OutcomeFailed, done.Code+": "+done.Error
	}
	auditOp, err := q.outbox.PutOp(ev)
	if err != nil {
		return false, err
	}
	cmps := append([]clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev),
		clientv3.Compare(clientv3.ModRevision(q.Key(op.ID)), "=", op.Revision),
	}, ch.cmps...)
	if ch.fail != nil {
		cmps = cmps[:2]
	}
	writes = append(writes, clientv3.OpPut(q.Key(op.ID), string(data)), auditOp)
	resp, err := q.o.Store.Client().Txn(ctx).If(cmps...).Then(writes...).Commit()
	if err != nil {
		return false, fmt.Errorf("ops: commit %s: %w", op.ID, err)
	}
	if !resp.Succeeded {
		return false, nil
	}
	log := q.o.Logger.Info()
	if done.State == Failed {
		log = q.o.Logger.Warn().Str("code", done.Code).Str("error", done.Error)
	}
	log.Str("op", op.ID).Str("kind", string(op.Kind)).Str("target", done.Target()).Str("state", string(done.State)).
		Int64("revision", resp.Header.Revision).Msg("operation finished")
	return true, nil
}

// plan reads what op depends on and computes its change. An error means
// the state could not be read.
func (q *Queue) plan(ctx context.Context, op Op) (change, error) {
	topo, topoRev, err := q.topology(ctx)
	if err != nil || topoRev == 0 {
		if err == nil {
			return change{fail: apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology is stored in etcd")}, nil
		}
		return change{}, err
	}
	topoCmp := clientv3.Compare(clientv3.ModRevision(q.o.Store.TopologyKey()), "=", topoRev)
	p := op.Params
	switch op.Kind {
	case KindMoveShard, KindSetShardState:
		return q.planShard(ctx, op, topo, topoCmp)
	case KindSetDCState:
		next, err := SetDCState(topo, p)
		if err != nil {
			return change{fail: err}, nil
		}
		changed := !sameDCState(topo, next, p.DC)
		ch := change{cmps: []clientv3.Cmp{topoCmp}, result: &Result{Changed: changed}}
		if changed {
			w, err := putJSON(q.o.Store.TopologyKey(), next)
			if err != nil {
				return change{}, err
			}
			ch.writes = []clientv3.Op{w}
		}
		return ch, nil
	case KindSetKillSwitch, KindClearKillSwitch:
		return q.planKillSwitch(ctx, op, topo, topoCmp)
	case KindResolveDivergence:
		return q.planResolve(ctx, op, topo, topoCmp)
	}
	return change{fail: apierr.Wrap(fmt.Errorf("%w: %q", ErrUnknownKind, op.Kind),
		drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, fmt.Sprintf("unknown operation kind %q", op.Kind))}, nil
}

func (q *Queue) planShard(ctx context.Context, op Op, topo topology.Topology, topoCmp clientv3.Cmp) (change, error) {
	p := op.Params
	if _, err := CheckKeyspace(topo, p.Keyspace); err != nil {
		return change{fail: err}, nil
	}
	m, err := shardmap.Load(ctx, q.o.Store, p.Keyspace)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return change{fail: NoMap(p.Keyspace)}, nil
	case err != nil:
		return change{}, err
	}
	var (
		next   shardmap.Map
		result = &Result{}
	)
	if op.Kind == KindMoveShard {
		next, result.Backup, err = MoveShard(m, topo, p)
	} else {
		next, err = SetShardState(m, topo, p)
	}
	if err != nil {
		return change{fail: err}, nil
	}
	key := shardmap.Key(q.o.Store, p.Keyspace)
	ch := change{cmps: []clientv3.Cmp{topoCmp, clientv3.Compare(clientv3.ModRevision(key), "=", m.Revision)}, result: result}
	before, _ := m.Shard(p.Shard)
	after, _ := next.Shard(p.Shard)
	if result.Changed = !before.Equal(after); result.Changed {
		w, err := putJSON(key, next)
		if err != nil {
			return change{}, err
		}
		ch.writes = []clientv3.Op{w}
	}
	return ch, nil
}

func (q *Queue) planKillSwitch(ctx context.Context, op Op, topo topology.Topology, topoCmp clientv3.Cmp) (change, error) {
	p := op.Params
	scope := state.KillSwitchScope(p.DC, p.Cluster)
	if op.Kind == KindSetKillSwitch {
		if p.KillSwitch == nil {
			return change{fail: apierr.InvalidArgument("kill_switch", "set_killswitch needs the kill switch")}, nil
		}
		scope = p.KillSwitch.Scope
	}
	key := q.o.Store.KillSwitchKey(scope)
	resp, err := q.o.Store.Client().Get(ctx, key)
	if err != nil {
		return change{}, fmt.Errorf("ops: read %s: %w", key, err)
	}
	var (
		cur    *state.KillSwitch
		curRev int64
	)
	if len(resp.Kvs) == 1 {
		curRev = resp.Kvs[0].ModRevision
		var ks state.KillSwitch
		if err := json.Unmarshal(resp.Kvs[0].Value, &ks); err == nil {
			cur = &ks
		}
	}
	keyCmp := clientv3.Compare(clientv3.ModRevision(key), "=", curRev)
	if op.Kind == KindClearKillSwitch {
		if curRev == 0 {
			// Nothing to clear: the scope must still make sense.
			if err := CheckScope(topo, p.DC, p.Cluster); err != nil {
				return change{fail: err}, nil
			}
			return change{cmps: []clientv3.Cmp{keyCmp, topoCmp}, result: &Result{}}, nil
		}
		// A switch that is set can always be cleared, even if its DC or
		// cluster has left the topology since.
		return change{cmps: []clientv3.Cmp{keyCmp}, writes: []clientv3.Op{clientv3.OpDelete(key)},
			result: &Result{Changed: true, Cleared: true, KillSwitch: cur}}, nil
	}
	dc, cluster, ok := splitScope(scope)
	if !ok {
		return change{fail: apierr.InvalidArgument("scope", fmt.Sprintf("malformed kill-switch scope %q", scope))}, nil
	}
	if err := CheckScope(topo, dc, cluster); err != nil {
		return change{fail: err}, nil
	}
	w, err := putJSON(key, *p.KillSwitch)
	if err != nil {
		return change{}, err
	}
	return change{cmps: []clientv3.Cmp{keyCmp, topoCmp}, writes: []clientv3.Op{w},
		result: &Result{Changed: true, KillSwitch: p.KillSwitch}}, nil
}

// splitScope is the inverse of state.KillSwitchScope; ok is false for a
// malformed scope.
func splitScope(scope string) (dc, cluster string, ok bool) {
	if rest, found := strings.CutPrefix(scope, "dc/"); found {
		dc = rest
	} else if rest, found := strings.CutPrefix(scope, "cluster/"); found {
		dc, cluster, _ = strings.Cut(rest, "/")
	}
	return dc, cluster, state.KillSwitchScope(dc, cluster) == scope
}

// topology reads the topology; revision 0 when none is stored.
func (q *Queue) topology(ctx context.Context) (topology.Topology, int64, error) {
	t, rev, err := q.o.Store.Topology(ctx)
	if errors.Is(err, state.ErrNotFound) {
		return t, 0, nil
	}
	return t, rev, err
}

func sameDCState(a, b topology.Topology, dc string) bool {
	x, _ := a.DC(dc)
	y, _ := b.DC(dc)
	return x.StateOf() == y.StateOf() && x.State == y.State
}

func putJSON(key string, v any) (clientv3.Op, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("ops: encode %s: %w", key, err)
	}
	return clientv3.OpPut(key, string(data)), nil
}

// prune deletes operations finished more than Retention ago.
func (q *Queue) prune(ctx context.Context, fence state.Fence) error {
	all, _, err := q.List(ctx)
	if err != nil {
		return err
	}
	return q.pruneList(ctx, fence, all)
}

func (q *Queue) pruneList(ctx context.Context, fence state.Fence, all []Op) error {
	cutoff := q.o.Now().Add(-q.o.Retention)
	n := 0
	for _, op := range all {
		if !op.Finished() || !op.FinishedAt.Before(cutoff) {
			continue
		}
		// Guarded by the fence and the record's revision, so a record
		// rewritten meanwhile is kept.
		resp, err := q.o.Store.Client().Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev),
			clientv3.Compare(clientv3.ModRevision(q.Key(op.ID)), "=", op.Revision),
		).Then(clientv3.OpDelete(q.Key(op.ID))).Commit()
		if err != nil {
			return fmt.Errorf("ops: prune %s: %w", op.ID, err)
		}
		if resp.Succeeded {
			n++
		}
	}
	if n > 0 {
		q.o.Logger.Info().Int("deleted", n).Dur("retention", q.o.Retention).Msg("operations queue: pruned finished operations")
	}
	return nil
}
