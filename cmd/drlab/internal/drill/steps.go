package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Step names, in the drill's order.
const (
	StepKill       = "kill"
	StepSwitchover = "switchover"
	StepPause      = "pause"
	StepEvacuate   = "evacuate"
	StepRestore    = "restore"
	StepDCLoss     = "dc-loss"
	StepDCReturn   = "dc-return"
)

// AllSteps lists every step in the drill's order.
var AllSteps = []string{StepKill, StepSwitchover, StepPause, StepEvacuate, StepRestore, StepDCLoss, StepDCReturn}

// ParseSteps reads a comma-separated step list ("all" for every step).
func ParseSteps(list string) ([]string, error) {
	if strings.TrimSpace(list) == "all" {
		return AllSteps, nil
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(AllSteps, s) {
			return nil, fmt.Errorf("unknown step %q (steps: %s)", s, strings.Join(AllSteps, ","))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no steps given")
	}
	return out, nil
}

// stepFunc carries out one step against a DC and fills the event: At,
// Done, Shards, Target, Record, Err. It returns once the system has
// recovered (or the bound ran out) and the cluster is back to full
// redundancy where the step can wait for it.
type stepFunc func(ctx context.Context, d *Drill, dc string, ev *Event)

// step returns the implementation of a step, or why it is not available.
func (d *Drill) step(ctx context.Context, name string) (stepFunc, string) {
	switch name {
	case StepKill:
		return stepKill, ""
	case StepSwitchover:
		return stepSwitchover, ""
	case StepPause:
		return stepPause, ""
	case StepEvacuate, StepRestore:
		if why := d.evacuationAvailable(ctx); why != "" {
			return nil, why
		}
		if name == StepEvacuate {
			return stepEvacuate, ""
		}
		return stepRestore, ""
	case StepDCLoss, StepDCReturn:
		if why := d.cityAvailable(ctx, name); why != "" {
			return nil, why
		}
		if name == StepDCLoss {
			return stepDCLoss, ""
		}
		return stepDCReturn, ""
	}
	return nil, "unknown step"
}

// evacuationAvailable asks the API for an evacuation plan; it returns why
// the step cannot run, or "".
func (d *Drill) evacuationAvailable(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := d.api.Evacuation.Evacuate(cctx, &drplanev1.EvacuateRequest{Dc: d.lab.DCs[0].Name, DryRun: true, Reason: "drill: probe"})
	if status.Code(err) == codes.Unimplemented {
		return "the coordinator does not implement evacuation yet (EvacuationService answers UNIMPLEMENTED)"
	}
	return ""
}

// stepKill kills the DC's master with SIGKILL, waits for the in-DC
// failover, then restarts the killed instance as a supervisor would and
// waits for it to rejoin.
func stepKill(ctx context.Context, d *Drill, dc string, ev *Event) {
	p, ok := d.masterProc(ctx, dc, ev)
	if !ok {
		return
	}
	ev.Target, ev.OldMaster = dc+"/"+d.cluster+" master "+p.name, p.name
	ev.Shards = d.ownedShards(dc)
	ev.At = time.Now()
	if err := p.signal(syscall.SIGKILL); err != nil {
		ev.Err = err.Error()
		return
	}
	d.waitFailover(ctx, dc, p.name, ev)
	d.restart(ctx, p, ev)
	d.systemRecord(ctx, dc, ev, drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER)
}

// stepSwitchover asks the API for a graceful switchover of the DC's
// cluster and waits for its answer. The HA agent refuses a switchover
// while it sees the cluster unhealthy, and one it was running fails when
// it loses its leadership (its etcd lease not renewed in time, as on a
// starved machine): both leave the cluster with its master, and an
// operator asks again. So does the step: it waits until the cluster is
// fully redundant again and retries, within RecoverBound, noting each
// earlier answer in ev.Retried; any other failure, or the bound running
// out, fails the step. What it measures is the switchover that ran.
func stepSwitchover(ctx context.Context, d *Drill, dc string, ev *Event) {
	deadline := time.Now().Add(d.o.RecoverBound)
	for {
		retry := switchoverOnce(ctx, d, dc, ev)
		if !retry {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		d.say("  %s; retrying once the cluster is fully redundant", ev.Err)
		ev.Retried = append(ev.Retried, ev.Err)
		ev.Err = ""
		if err := d.waitClusterRedundant(ctx, dc, deadline); err != nil {
			ev.Err = fmt.Sprintf("switchover not retried: %v", err)
			return
		}
	}
}

// switchoverOnce asks for one switchover and fills ev; it reports whether
// the answer is one to ask again on (see stepSwitchover).
func switchoverOnce(ctx context.Context, d *Drill, dc string, ev *Event) (retry bool) {
	old, err := d.mysql.Master(ctx, dc)
	if err != nil {
		ev.Err = err.Error()
		return false
	}
	ev.Target, ev.OldMaster = dc+"/"+d.cluster+" from "+old, old
	ev.Shards = d.ownedShards(dc)
	ev.At = time.Now()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	resp, err := d.api.Failover.Switchover(cctx, &drplanev1.SwitchoverRequest{Dc: dc, Cluster: d.cluster, TimeoutSeconds: 30})
	cancel()
	if err != nil {
		ev.Err = "switchover: " + err.Error()
		return retryableSwitchover(err)
	}
	if r := resp.GetRecord(); r != nil {
		ev.Record = recordOf(r)
	}
	d.waitFailover(ctx, dc, old, ev)
	return false
}

// retryableSwitchover reports whether a failed switchover is one the HA
// agent refused for the cluster's health or abandoned on losing its
// leadership (the answers of services/haagent/internal/supervise), which
// leave the cluster as it was.
func retryableSwitchover(err error) bool {
	if status.Code(err) != codes.FailedPrecondition {
		return false
	}
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "switchover refused") || strings.Contains(msg, "lost leadership")
}

// waitClusterRedundant polls the DC's cluster until it is fully redundant
// (one writable master, every replica replicating from it, caught up), or
// until deadline.
func (d *Drill) waitClusterRedundant(ctx context.Context, dc string, deadline time.Time) error {
	for {
		err := d.mysql.Redundant(ctx, dc)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stepPause stops the DC's master with SIGSTOP, keeps it stopped until
// another instance has been promoted (past detection), then lets it go on
// with SIGCONT: the deposed master must neither stay writable nor
// acknowledge anything. When the HA agent fenced it out of band (the lab's
// fence hook kills it), it is started again instead, as after a kill.
func stepPause(ctx context.Context, d *Drill, dc string, ev *Event) {
	p, ok := d.masterProc(ctx, dc, ev)
	if !ok {
		return
	}
	ev.Target, ev.OldMaster = dc+"/"+d.cluster+" master "+p.name, p.name
	ev.Shards = d.ownedShards(dc)
	ev.At = time.Now()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		ev.Err = err.Error()
		return
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := p.signal(syscall.SIGCONT); err != nil && ev.Err == "" {
				ev.Err = err.Error()
			}
		}
	}
	defer resume()
	d.waitFailover(ctx, dc, p.name, ev)
	if !p.stopped() {
		// The HA agent fenced it out of band (the lab's fence hook kills
		// it) before promoting — nothing else ends a stop but SIGCONT —
		// and it may still be exiting: a supervisor starts it again,
		// read-only, once it is gone.
		resumed = true
		d.say("  %s was fenced (killed) by the HA agent before the promotion", p.name)
		d.restart(ctx, p, ev)
	}
	resume()
	d.systemRecord(ctx, dc, ev, drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER)
}

// masterProc finds the DC's current master and its process.
func (d *Drill) masterProc(ctx context.Context, dc string, ev *Event) (*mysqldProc, bool) {
	master, err := d.mysql.Master(ctx, dc)
	if err != nil {
		ev.Err = err.Error()
		return nil, false
	}
	p, err := findMysqld(d.lab.Drlab.Dir, master)
	if err != nil {
		ev.Err = err.Error()
		return nil, false
	}
	return p, true
}

// waitFailover waits until another instance than old is the DC's only
// writable one and a write to an affected shard was acknowledged after the
// event began; it sets ev.Done, or ev.Err when the bound runs out.
func (d *Drill) waitFailover(ctx context.Context, dc, old string, ev *Event) {
	deadline := time.Now().Add(d.o.RecoverBound)
	for {
		if m, err := d.mysql.Master(ctx, dc); err == nil && m != old && d.ackedSince(ev.Shards, ev.At, old) {
			ev.Done = time.Now()
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Done = time.Now()
			ev.Err = fmt.Sprintf("no new master of %s/%s taking writes within %s", dc, d.cluster, d.o.RecoverBound)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ackedSince reports whether a write to one of shards was acknowledged
// after t by another instance than old.
func (d *Drill) ackedSince(shards []int, t time.Time, old string) bool {
	for _, w := range d.writers.Writes() {
		if w.Ack.After(t) && w.Instance != old && slices.Contains(shards, w.Shard) {
			return true
		}
	}
	return false
}

// restart waits for the killed process to be gone and starts it again.
func (d *Drill) restart(ctx context.Context, p *mysqldProc, ev *Event) {
	deadline := time.Now().Add(10 * time.Second)
	for !p.gone() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Err = fmt.Sprintf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := p.restart()
	if err != nil {
		ev.Err = err.Error()
		return
	}
	d.say("  restarted %s (pid %d) with its own command line", p.name, pid)
}

// systemRecord fetches the failover record the HA agent wrote for the
// event, if it has one by then.
func (d *Drill) systemRecord(ctx context.Context, dc string, ev *Event, kind drplanev1.FailoverKind) {
	if ev.Record != nil || ev.At.IsZero() {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := d.api.Failover.ListFailovers(cctx, &drplanev1.ListFailoversRequest{Dc: dc, Cluster: d.cluster, Limit: 10})
		cancel()
		if err == nil {
			for _, r := range resp.GetRecords() {
				if r.GetKind() == kind && !r.GetDetectedAt().AsTime().Before(ev.At.Add(-time.Second)) && r.GetFinishedAt() != nil {
					ev.Record = recordOf(r)
					return
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func recordOf(r *drplanev1.FailoverRecord) *SystemRecord {
	ts := func(t *timestamppb.Timestamp) time.Time {
		if t == nil {
			return time.Time{}
		}
		return t.AsTime()
	}
	out := &SystemRecord{ID: r.GetId(), Outcome: strings.TrimPrefix(r.GetOutcome().String(), "FAILOVER_OUTCOME_"),
		OldMaster: r.GetOldMaster(), NewMaster: r.GetNewMaster(), RTO: r.GetRto().AsDuration(),
		BlockWindow: r.GetBlockWindow().AsDuration(), RPO: r.GetRpoTransactions(),
		Rewound: int(r.GetRewind().GetLostRequestsTotal()), RewoundIDs: r.GetRewind().GetLostRequests(),
		DetectedAt: ts(r.GetDetectedAt()), StartedAt: ts(r.GetStartedAt()), WritableAt: ts(r.GetWritableAt()),
		FinishedAt: ts(r.GetFinishedAt())}
	for _, st := range r.GetSteps() {
		out.Steps = append(out.Steps, RecordStep{Name: st.GetName(), At: ts(st.GetAt()), Took: st.GetTook().AsDuration()})
	}
	return out
}

// stepEvacuate drains the DC through the evacuation API and waits for the
// operation to finish.
func stepEvacuate(ctx context.Context, d *Drill, dc string, ev *Event) {
	ev.Target, ev.Shards, ev.At = dc, d.ownedShards(dc), time.Now()
	resp, err := d.api.Evacuation.Evacuate(ctx, &drplanev1.EvacuateRequest{Dc: dc, Reason: "drill"})
	if err != nil {
		ev.Err = "evacuate: " + err.Error()
		return
	}
	d.waitOperation(ctx, resp.GetOperationId(), ev)
}

// stepRestore sets the DC back to ACTIVE and moves its home shards back.
func stepRestore(ctx context.Context, d *Drill, dc string, ev *Event) {
	ev.Target, ev.At = dc, time.Now()
	ev.Shards = d.homeShards(dc)
	resp, err := d.api.Evacuation.Restore(ctx, &drplanev1.RestoreRequest{Dc: dc, MoveHome: true, Reason: "drill"})
	if err != nil {
		ev.Err = "restore: " + err.Error()
		return
	}
	d.waitOperation(ctx, resp.GetOperationId(), ev)
}

// waitOperation polls an operation until it ends.
func (d *Drill) waitOperation(ctx context.Context, id string, ev *Event) {
	deadline := time.Now().Add(2 * d.o.RecoverBound)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := d.api.Evacuation.GetOperation(cctx, &drplanev1.GetOperationRequest{Id: id})
		cancel()
		if err == nil {
			switch op := resp.GetOperation(); op.GetState() {
			case drplanev1.OperationState_OPERATION_STATE_SUCCEEDED:
				ev.Done, ev.Record = time.Now(), operationRecord(op)
				return
			case drplanev1.OperationState_OPERATION_STATE_FAILED, drplanev1.OperationState_OPERATION_STATE_CANCELED:
				ev.Done, ev.Err = time.Now(), fmt.Sprintf("operation %s ended %s: %s", id, op.GetState(), op.GetError())
				ev.Record = operationRecord(op)
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Done, ev.Err = time.Now(), fmt.Sprintf("operation %s not finished within %s", id, 2*d.o.RecoverBound)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// operationRecord is the coordinator's record of an evacuation or restore,
// from its handoffs: writes to a shard stop only while the handoff engine
// holds it frozen, so the longest freeze the engine measured (freeze to
// unfreeze) is both the system's RTO and block window of the event. A
// handoff flips a shard only once the new owner applied the old owner's
// watermark, and an aborted one unfreezes it at the old owner, so the
// system's RPO of a finished operation is zero by construction; -1
// (unknown) for one that failed or was canceled.
func operationRecord(op *drplanev1.Operation) *SystemRecord {
	r := &SystemRecord{ID: op.GetId(), Outcome: strings.TrimPrefix(op.GetState().String(), "OPERATION_STATE_"), RPO: -1}
	if op.GetState() == drplanev1.OperationState_OPERATION_STATE_SUCCEEDED {
		r.RPO = 0
	}
	var longest int64
	for _, h := range op.GetHandoffs() {
		switch h.GetState() {
		case drplanev1.HandoffState_HANDOFF_STATE_MOVED:
			r.Moved++
		case drplanev1.HandoffState_HANDOFF_STATE_ABORTED:
			r.Aborted++
		}
		longest = max(longest, h.GetBlockMs())
	}
	if t := op.GetTotals(); t != nil {
		longest = max(longest, t.GetBlockMaxMs())
	}
	r.RTO = time.Duration(longest) * time.Millisecond
	r.BlockWindow = r.RTO
	return r
}
