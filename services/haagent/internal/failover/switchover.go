package failover

import (
	"context"
	"errors"
	"fmt"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// ErrSwitchover means a switchover could not be done; the old master was
// made writable again unless the error says otherwise.
var ErrSwitchover = errors.New("failover: switchover failed")

// SwitchoverPlan describes a graceful switchover.
type SwitchoverPlan struct {
	Cluster   topology.Cluster
	Master    state.MasterRecord
	MasterRev int64
	// To is the instance to promote, chosen by the caller.
	To     string
	Intent state.SwitchoverIntent
}

// Switchover moves the master role to plan.To with no write lost: it
// blocks writes on the old master (fence), waits until the target applied
// the old master's last transaction, writes the master record, makes the
// target writable and repoints everything else, the old master included.
// The write-block window is the time from the fence to the target being
// writable. If the target does not catch up in time, the old master is
// made writable again and the switchover fails.
func (r *Runner) Switchover(ctx context.Context, fence state.Fence, plan SwitchoverPlan) (state.FailoverRecord, error) {
	p := r.start(state.KindSwitchover, plan.Cluster, fence)
	p.rec.Trigger = "operator:" + plan.Intent.RequestedBy
	p.rec.OldMaster, p.rec.NewMaster = plan.Master.Instance, plan.To
	p.rec.DetectedAt = plan.Intent.RequestedAt.UTC()
	old, okOld := instance(plan.Cluster, plan.Master.Instance)
	to, okTo := instance(plan.Cluster, plan.To)
	if !okOld || !okTo || old.Name == to.Name {
		p.rec.DetectedAt = p.rec.StartedAt
		return p.rec, fmt.Errorf("%w: bad plan: master %q, target %q", ErrSwitchover, plan.Master.Instance, plan.To)
	}
	if err := p.claim(ctx); err != nil {
		return p.rec, err
	}
	if err := p.step("pre_failover", func() error {
		return r.o.Hooks.Run(ctx, "pre_failover", r.o.Hooks.PreFailover, p.vars(""))
	}); err != nil {
		return p.finish(ctx, fmt.Errorf("%w: %w", ErrAborted, err))
	}
	if err := p.bounded(ctx, "check_target", r.o.StepTimeout, func(ctx context.Context) error {
		pos, err := r.o.Ops.Read(ctx, to.Addr)
		switch {
		case err != nil:
			return err
		case !pos.ReadOnly:
			return fmt.Errorf("target %s is writable", to.Name)
		}
		return nil
	}); err != nil {
		return p.finish(ctx, fmt.Errorf("%w: %w", ErrSwitchover, err))
	}
	blockedAt := r.o.Now()
	if err := p.bounded(ctx, "block_writes", r.o.StepTimeout, func(ctx context.Context) error {
		fctx, cancel := context.WithTimeout(ctx, r.o.FenceTimeout)
		defer cancel()
		return r.o.Ops.Fence(fctx, old.Addr)
	}); err != nil {
		return p.finish(ctx, r.unblock(ctx, p, old, fmt.Errorf("%w: %w", ErrSwitchover, err)))
	}
	var last gtid.Pos
	if err := p.bounded(ctx, "read_old_position", r.o.StepTimeout, func(ctx context.Context) error {
		pos, err := r.o.Ops.Read(ctx, old.Addr)
		last = pos.Binlog
		return err
	}); err != nil {
		return p.finish(ctx, r.unblock(ctx, p, old, fmt.Errorf("%w: %w", ErrSwitchover, err)))
	}
	if err := p.bounded(ctx, "wait_target_caught_up", r.o.ApplyTimeout+r.o.StepTimeout, func(ctx context.Context) error {
		return r.o.Ops.WaitApplied(ctx, to.Addr, last, r.o.ApplyTimeout)
	}); err != nil {
		return p.finish(ctx, r.unblock(ctx, p, old, fmt.Errorf("%w: %w", ErrSwitchover, err)))
	}
	if err := p.bounded(ctx, "stop_replication", r.o.StepTimeout, func(ctx context.Context) error { return r.o.Ops.StopReplication(ctx, to.Addr) }); err != nil {
		return p.finish(ctx, r.unblock(ctx, p, old, fmt.Errorf("%w: %w", ErrSwitchover, err)))
	}
	has, exact := r.promotedPos(ctx, p, to, Position{Received: last})
	if err := r.commit(ctx, p, plan.Master, plan.MasterRev, to, "switchover requested by "+plan.Intent.RequestedBy); err != nil {
		// The record still names the old master: restart the target's
		// replication and give the old master its writes back.
		_ = r.o.Ops.StartReplication(ctx, to.Addr)
		return p.finish(ctx, r.unblock(ctx, p, old, fmt.Errorf("%w: %w", ErrSwitchover, err)))
	}
	if err := p.bounded(ctx, "promote", r.o.StepTimeout, func(ctx context.Context) error { return r.o.Ops.MakeMaster(ctx, to.Addr) }); err != nil {
		// The record names the target; the analysis (NoWritableMaster)
		// retries making it writable. Do not unblock the old master.
		return p.finish(ctx, fmt.Errorf("%w: promote %s: %w", ErrSwitchover, to.Name, err))
	}
	p.writable()
	p.rec.BlockWindow = state.Duration(p.rec.WritableAt.Sub(blockedAt))
	_ = p.bounded(ctx, "rejoin_old_master", r.o.StepTimeout, func(ctx context.Context) error {
		return r.o.Ops.Replicate(ctx, old.Addr, to.Addr, mysqld.CurrentPos)
	})
	r.repoint(ctx, p, plan.Cluster, to, old.Name)
	p.rpo(last, has, exact)
	return p.finish(ctx, nil)
}

// unblock makes the old master writable again after a switchover failed
// before the master record changed.
func (r *Runner) unblock(ctx context.Context, p *procedure, old topology.Instance, cause error) error {
	if err := p.bounded(ctx, "unblock_old_master", r.o.StepTimeout, func(ctx context.Context) error { return r.o.Ops.MakeMaster(ctx, old.Addr) }); err != nil {
		return fmt.Errorf("%w; the old master %s stays read-only: %w", cause, old.Name, err)
	}
	return cause
}
