// Package decide is the HA agent's decision: one pure function of a
// cluster's analysis, the agent's memory of the cluster, the kill switches,
// an operator's hold release and the time, returning what to do — a
// failover plan, the single-instance recoveries, or why a failover called
// for is held back — and the memory to keep. The supervisor only carries
// the plan out and reports the outcome back through Memory's methods.
//
// The anti-flap rule is a budget, not a wall: a dead master is failed over
// again as soon as the cluster has been healthy (master writable, every
// reachable replica connected and caught up, semi-sync acking) for
// Policy.Settle since the last master change. A failover is held only when
// the cluster flaps: the master promoted last failed before the cluster
// settled, or more than Policy.MaxFailovers failovers would fall within
// Policy.Window. Holds lapse by themselves at their Until, or when an
// operator releases them.
//
// A master promoted and not settled since is given a grace: it is failed
// over only once it has been found dead for Policy.Grace, or at once when
// its port refuses connections (its process is gone). Until a replica is
// connected to it, one missed probe is no evidence: a replica just pointed
// at it is still connecting, so it "lost" a master it never had. During
// the grace the plan is Confirming, not a hold (no event); a hold (the
// budget's, when it is on) comes first, an operator's release ends it.
//
// A lossy failover is held too, for at most Policy.LossyWait: one whose best
// candidate lacks transactions the master was last seen with while a
// replica that may hold them did not answer (see lossy).
package decide

import (
	"fmt"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

// Policy is the anti-flap budget and the retry backoff.
type Policy struct {
	// Settle is how long the cluster must be healthy after a master change
	// before its master may be failed over again without a hold.
	Settle time.Duration
	// Window and MaxFailovers: at most MaxFailovers automatic failovers of
	// a cluster within Window; MaxFailovers <= 0 disables the budget.
	Window       time.Duration
	MaxFailovers int
	// RetryBackoff is the wait after a failed failover before the next try.
	RetryBackoff time.Duration
	// CaughtUp is the largest replica delay counted as caught up.
	CaughtUp time.Duration
	// LossyWait bounds the wait of a lossy failover: when the best candidate
	// lacks transactions the master was last seen with and a replica that
	// may hold them is unreachable, the failover is held (HoldLossy) until
	// that replica is back and a candidate, or LossyWait after the failure
	// was detected; then the best candidate is promoted and the record
	// counts what was lost. 0: no wait.
	LossyWait time.Duration
	// Grace is how long a master not settled since its promotion must have
	// been found dead before it is failed over, unless it refuses
	// connections. 0: no grace.
	Grace time.Duration
}

// DefaultPolicy returns the defaults argued in docs/adr/0006-failover-budget.md.
func DefaultPolicy() Policy {
	return Policy{Settle: 5 * time.Second, Window: 10 * time.Minute, MaxFailovers: 10,
		RetryBackoff: time.Second, CaughtUp: time.Second, LossyWait: 10 * time.Second, Grace: time.Second}
}

// Memory is everything the agent remembers about one cluster. The embedded
// ClusterMemory is durable (etcd); the rest lives only in the active agent.
type Memory struct {
	state.ClusterMemory
	// DetectedAt is when the failure now calling for a failover was first
	// seen; zero when none is.
	DetectedAt time.Time
	// LastTry is when the last failover attempt failed.
	LastTry time.Time
	// HealthySince is when the cluster became healthy; zero when it is not.
	HealthySince time.Time
	// MasterPos and MasterID are the master's gtid_binlog_pos and server id
	// when last seen reachable.
	MasterPos string
	MasterID  uint32
	// MasterUnprotected is set when the master was last seen without an
	// active semi-sync or without a semi-sync replica: it may have
	// acknowledged writes that no replica received (past the semi-sync
	// timeout MariaDB acknowledges asynchronously), so what a failover loses
	// is unknown beyond MasterPos.
	MasterUnprotected bool
}

// Input is what the decision is made from.
type Input struct {
	Cluster  analysis.Cluster
	Found    []analysis.Analysis
	Memory   Memory
	Switches []state.KillSwitch
	// Release is the cluster's latest operator release, nil when none.
	Release *state.HoldRelease
	Now     time.Time
}

// Failover is an automatic failover to run.
type Failover struct {
	Analysis   analysis.Analysis
	DetectedAt time.Time
	// Candidates are the eligible replicas, best first; Excluded says why
	// every other instance is not one.
	Candidates []string
	Excluded   map[string]string
	// Known are the candidates' received positions as analyzed, by name.
	Known map[string]string
	// AcceptLoss is set when the failover may promote a candidate that
	// lacks what another one was known to have (the lossy wait ran out, or
	// an operator released the hold): the runner then promotes the best
	// candidate it can read instead of giving the attempt up.
	AcceptLoss bool
}

// Event is something the decision changed that the agent reports (log,
// audit): a hold that began or changed, lapsed, or was released.
type Event struct {
	// Kind is "held", "hold_lapsed" or "released".
	Kind   string
	Hold   state.FailoverHold
	Detail string
}

// Plan is the decision.
type Plan struct {
	// Failover is set when a failover is to run now; Recoveries are empty
	// then.
	Failover *Failover
	// Recoveries are the single-instance recoveries to run, in order.
	Recoveries []analysis.Analysis
	// Hold is set when a failover is called for and held back.
	Hold *state.FailoverHold
	// Backoff is set when a failover is called for and waits out the retry
	// backoff after a failed attempt (not a hold).
	Backoff bool
	// Confirming is set when a failover is called for against a master not
	// settled since its promotion, found dead less than Policy.Grace ago
	// and not refusing connections: the failure is not confirmed yet (not a
	// hold).
	Confirming bool
	Events     []Event
	// Memory is the memory to keep.
	Memory Memory
}

// Decide makes the decision for one cluster.
func Decide(in Input, p Policy) Plan {
	now := in.Now
	m := in.Memory
	m.Failovers = append([]time.Time(nil), m.Failovers...)
	var events []Event
	if r := in.Release; r != nil && r.At.After(m.ReleasedAt) {
		m.ReleasedAt = r.At
		kept := m.Failovers[:0]
		for _, t := range m.Failovers {
			if t.After(r.At) {
				kept = append(kept, t)
			}
		}
		m.Failovers = kept
		if !m.LastChange.IsZero() && !m.LastChange.After(r.At) && m.SettledAt.Before(m.LastChange) {
			m.SettledAt = r.At
		}
		events = append(events, Event{Kind: "released", Detail: fmt.Sprintf("released by %s: %s", r.By, r.Reason)})
		if m.Hold != nil {
			events[len(events)-1].Hold = *m.Hold
			m.Hold = nil
		}
	}
	m.Failovers = within(m.Failovers, now, p.Window)
	if Healthy(in.Cluster, in.Found, p.CaughtUp) {
		if m.HealthySince.IsZero() {
			m.HealthySince = now
		}
	} else {
		m.HealthySince = time.Time{}
	}
	if !m.LastChange.IsZero() && m.SettledAt.Before(m.LastChange) && !m.HealthySince.IsZero() &&
		now.Sub(m.HealthySince) >= p.Settle {
		m.SettledAt = now
	}
	plan := Plan{}
	var fa *analysis.Analysis
	for i := range in.Found {
		if in.Found[i].Recovery == analysis.RecoveryFailover {
			fa = &in.Found[i]
			break
		}
	}
	if fa == nil {
		m.DetectedAt = time.Time{}
		if m.Hold != nil {
			events = append(events, Event{Kind: "hold_lapsed", Hold: *m.Hold, Detail: "no failover is called for any more"})
			m.Hold = nil
		}
		plan.Recoveries = in.Found
		plan.Events, plan.Memory = events, m
		return plan
	}
	if m.DetectedAt.IsZero() {
		m.DetectedAt = now
	}
	cands, excluded := analysis.Candidates(in.Cluster)
	h := hold(in, m, p)
	if h == nil {
		h = lossy(in, m, p, cands)
	}
	if h != nil {
		if m.Hold != nil && m.Hold.Reason == h.Reason {
			h.Since = m.Hold.Since
		} else {
			events = append(events, Event{Kind: "held", Hold: *h, Detail: h.Detail})
		}
		m.Hold = h
		plan.Hold = h
		plan.Events, plan.Memory = events, m
		return plan
	}
	if m.Hold != nil {
		events = append(events, Event{Kind: "hold_lapsed", Hold: *m.Hold, Detail: "the hold ended"})
		m.Hold = nil
	}
	if unconfirmed(in, m, p) && !released(m) {
		plan.Confirming = true
		plan.Events, plan.Memory = events, m
		return plan
	}
	if !m.LastTry.IsZero() && now.Sub(m.LastTry) < p.RetryBackoff {
		plan.Backoff = true
		plan.Events, plan.Memory = events, m
		return plan
	}
	names := make([]string, len(cands))
	known := make(map[string]string, len(cands))
	for i, c := range cands {
		names[i] = c.Instance.Name
		known[c.Instance.Name] = c.Pos.String()
	}
	plan.Failover = &Failover{Analysis: *fa, DetectedAt: m.DetectedAt, Candidates: names, Excluded: excluded, Known: known,
		AcceptLoss: released(m) || p.LossyWait <= 0 || !now.Before(m.DetectedAt.Add(p.LossyWait))}
	plan.Events, plan.Memory = events, m
	return plan
}

// hold returns why the failover m calls for is held back, nil when it is
// not.
func hold(in Input, m Memory, p Policy) *state.FailoverHold {
	now := in.Now
	if ks, ok := state.Blocked(in.Switches, in.Cluster.DC, in.Cluster.Name); ok {
		return &state.FailoverHold{Reason: state.HoldKillSwitch, Since: now,
			Detail: fmt.Sprintf("kill switch %s set by %s: %s", ks.Scope, ks.SetBy, ks.Reason)}
	}
	if p.MaxFailovers > 0 && len(m.Failovers) >= p.MaxFailovers {
		return &state.FailoverHold{Reason: state.HoldFlapping, Since: now, Until: m.Failovers[0].Add(p.Window),
			Detail: fmt.Sprintf("%d automatic failovers within %s (budget %d)", len(m.Failovers), p.Window, p.MaxFailovers)}
	}
	if unsettled(m) && now.Sub(m.LastChange) < p.Window {
		return &state.FailoverHold{Reason: state.HoldUnsettled, Since: now, Until: m.LastChange.Add(p.Window),
			Detail: fmt.Sprintf("the master promoted %s ago failed before the cluster settled (healthy for %s)",
				now.Sub(m.LastChange).Round(time.Millisecond), p.Settle)}
	}
	return nil
}

// unsettled reports whether the master changed and the cluster has not
// settled since.
func unsettled(m Memory) bool { return !m.LastChange.IsZero() && m.SettledAt.Before(m.LastChange) }

// unconfirmed reports whether the death of a master not settled since its
// promotion is still within its grace: found dead less than Policy.Grace
// ago, and its port did not refuse the connection.
func unconfirmed(in Input, m Memory, p Policy) bool {
	if p.Grace <= 0 || !unsettled(m) || in.Now.Sub(m.DetectedAt) >= p.Grace {
		return false
	}
	for _, i := range in.Cluster.Instances {
		if i.Name == in.Cluster.Master && i.Status.Refused {
			return false
		}
	}
	return true
}

// released reports whether an operator released the cluster's hold since
// the failure now calling for a failover was detected.
func released(m Memory) bool {
	return !m.ReleasedAt.IsZero() && !m.ReleasedAt.Before(m.DetectedAt)
}

// lossy returns the hold of a failover that would lose transactions the
// master was last seen with (its best candidate lacks them) while a replica
// that may hold them is unreachable: with semi-sync, a write acknowledged
// to a client is on at least one replica, and a replica missing from the
// candidates for one unanswered probe is often the one that has it. The
// hold lasts until that replica is back among the candidates, or LossyWait
// after the failure was detected; nil when there is nothing to wait for.
func lossy(in Input, m Memory, p Policy, cands []analysis.Candidate) *state.FailoverHold {
	if p.LossyWait <= 0 || len(cands) == 0 || released(m) {
		return nil
	}
	until := m.DetectedAt.Add(p.LossyWait)
	if !in.Now.Before(until) {
		return nil
	}
	var mpos gtid.Pos
	var away []string
	for _, i := range in.Cluster.Instances {
		switch {
		case i.Name == in.Cluster.Master:
			pos, err := gtid.ParsePos(i.Status.GTIDBinlogPos)
			if err != nil {
				return nil
			}
			mpos = pos
		case !i.Status.Reachable && !i.Quarantined && !i.NoMaster:
			away = append(away, i.Name)
		}
	}
	if len(mpos) == 0 || len(away) == 0 {
		return nil
	}
	best := cands[0]
	n, lost := analysis.Missing(mpos, best.Pos)
	if n == 0 {
		return nil
	}
	return &state.FailoverHold{Reason: state.HoldLossy, Since: in.Now, Until: until,
		Detail: fmt.Sprintf("the best candidate %s (at %s) lacks %d transactions the master %s was last seen with (%s); "+
			"unreachable, and may hold them: %s", best.Instance.Name, best.Pos, n, in.Cluster.Master, lost, strings.Join(away, ", "))}
}

// within keeps the times inside (now-window, now].
func within(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < window {
			out = append(out, t)
		}
	}
	return out
}

// FailedOver returns the memory after a successful automatic failover at
// now.
func (m Memory) FailedOver(now time.Time) Memory {
	m.Failovers = append(append([]time.Time(nil), m.Failovers...), now)
	return m.changed(now)
}

// SwitchedOver returns the memory after an operator's switchover at now:
// the master changed (the cluster must settle again), the budget is not
// spent.
func (m Memory) SwitchedOver(now time.Time) Memory { return m.changed(now) }

func (m Memory) changed(now time.Time) Memory {
	m.LastChange, m.SettledAt = now, time.Time{}
	m.DetectedAt, m.LastTry, m.HealthySince = time.Time{}, time.Time{}, time.Time{}
	m.MasterPos, m.MasterID, m.MasterUnprotected = "", 0, false
	return m
}

// Failed returns the memory after a failed failover attempt at now.
func (m Memory) Failed(now time.Time) Memory {
	m.LastTry = now
	return m
}

// Healthy reports whether the cluster counts as healthy for settling: its
// recorded master is reachable and writable; no analysis calls for more
// than an alert about an unreachable or quarantined instance; every
// reachable replica of the master is connected to it and at most caughtUp
// behind, and there is at least one; and, when the master has semi-sync
// on, a semi-sync replica is connected.
func Healthy(c analysis.Cluster, found []analysis.Analysis, caughtUp time.Duration) bool {
	for _, a := range found {
		if a.Code != analysis.DeadReplica && a.Code != analysis.Quarantined {
			return false
		}
	}
	var master analysis.Instance
	ok := false
	for _, in := range c.Instances {
		if in.Name == c.Master && c.Master != "" {
			master, ok = in, true
		}
	}
	if !ok || !master.Status.Reachable || master.Status.ReadOnly {
		return false
	}
	if master.Status.SemiSyncMaster && master.Status.SemiSyncClients == 0 {
		return false
	}
	connected := 0
	for _, in := range c.Instances {
		st := in.Status
		if in.Name == master.Name || in.Quarantined || !st.Reachable {
			continue
		}
		if st.IOState != "Yes" || !st.SQLRunning || st.SecondsBehind == nil ||
			time.Duration(*st.SecondsBehind)*time.Second > caughtUp {
			return false
		}
		connected++
	}
	return connected > 0
}
