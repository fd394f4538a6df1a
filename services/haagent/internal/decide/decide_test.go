package decide_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
	"github.com/drplane/drplane/services/haagent/internal/decide"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func zero() *int64 { v := int64(0); return &v }

func inst(name string, st state.InstanceStatus) analysis.Instance {
	st.Name, st.Addr = name, name+":3306"
	return analysis.Instance{Name: name, Addr: name + ":3306", Status: st}
}

func healthyMaster(name string) analysis.Instance {
	return inst(name, state.InstanceStatus{Role: state.RoleMaster, Reachable: true, GTIDBinlogPos: "0-1-10",
		GTIDCurrentPos: "0-1-10", SemiSyncMaster: true, SemiSyncClients: 2})
}

func healthyReplica(name, src string) analysis.Instance {
	return inst(name, state.InstanceStatus{Role: state.RoleReplica, Reachable: true, ReadOnly: true,
		GTIDBinlogPos: "0-1-10", GTIDCurrentPos: "0-1-10", GTIDSlavePos: "0-1-10", GTIDIOPos: "0-1-10",
		IORunning: true, IOState: "Yes", SQLRunning: true, SecondsBehind: zero(), SourceHost: src + ":3306"})
}

func deadMaster(name string) analysis.Instance {
	return inst(name, state.InstanceStatus{Role: state.RoleUnknown, GTIDBinlogPos: "0-1-10"})
}

func lostReplica(name, src string) analysis.Instance {
	in := healthyReplica(name, src)
	in.Status.IOState, in.Status.IORunning, in.Status.SecondsBehind, in.Status.IOErrno = "Connecting", false, nil, 2003
	return in
}

func cluster(master string, ins ...analysis.Instance) analysis.Cluster {
	return analysis.Cluster{DC: "dc", Name: "db", Master: master, Instances: ins, MaxLag: 10 * time.Second}
}

// healthy: m1 master, r1 and r2 replicas. dead: m1 died, r1 and r2 lost it.
var (
	healthy = cluster("m1", healthyMaster("m1"), healthyReplica("r1", "m1"), healthyReplica("r2", "m1"))
	dead    = cluster("m1", deadMaster("m1"), lostReplica("r1", "m1"), lostReplica("r2", "m1"))
)

func mem(f func(*decide.Memory)) decide.Memory {
	m := decide.Memory{ClusterMemory: state.ClusterMemory{DC: "dc", Cluster: "db"}}
	if f != nil {
		f(&m)
	}
	return m
}

func TestDecide(t *testing.T) {
	p := decide.DefaultPolicy()
	killAll := []state.KillSwitch{{Scope: "global", Reason: "maintenance", SetBy: "ops"}}
	killOther := []state.KillSwitch{{Scope: "cluster/dc/other", Reason: "x", SetBy: "ops"}}
	release := &state.HoldRelease{DC: "dc", Cluster: "db", By: "operator:ann", Reason: "checked", At: at(20 * time.Second)}
	tests := []struct {
		name     string
		c        analysis.Cluster
		mem      decide.Memory
		switches []state.KillSwitch
		release  *state.HoldRelease
		now      time.Time
		// want: "failover", "hold:<reason>", "backoff", "recover" (no failover called for)
		want      string
		wantUntil time.Time
		wantEvent string
	}{
		{name: "healthy cluster: nothing", c: healthy, mem: mem(nil), now: at(0), want: "recover"},
		{name: "first failover", c: dead, mem: mem(nil), now: at(0), want: "failover"},
		{name: "kill switch holds", c: dead, mem: mem(nil), switches: killAll, now: at(0),
			want: "hold:" + state.HoldKillSwitch, wantEvent: "held"},
		{name: "another cluster's kill switch does not", c: dead, mem: mem(nil), switches: killOther, now: at(0), want: "failover"},
		{name: "settled since the last failover: failover again at once", c: dead,
			mem: mem(func(m *decide.Memory) {
				m.Failovers, m.LastChange, m.SettledAt = []time.Time{at(0)}, at(0), at(6*time.Second)
			}), now: at(11 * time.Second), want: "failover"},
		{name: "promoted master failed before settling: held until the window ends", c: dead,
			mem: mem(func(m *decide.Memory) { m.Failovers, m.LastChange = []time.Time{at(0)}, at(0) }),
			now: at(3 * time.Second), want: "hold:" + state.HoldUnsettled, wantUntil: at(p.Window), wantEvent: "held"},
		{name: "unsettled hold lapses after the window", c: dead,
			mem: mem(func(m *decide.Memory) {
				m.Failovers, m.LastChange, m.DetectedAt = []time.Time{at(0)}, at(0), at(time.Second)
				m.Hold = &state.FailoverHold{Reason: state.HoldUnsettled, Since: at(time.Second), Until: at(p.Window)}
			}), now: at(p.Window), want: "failover", wantEvent: "hold_lapsed"},
		{name: "an unsettled switchover holds as well", c: dead,
			mem: mem(func(m *decide.Memory) { m.LastChange = at(0) }), now: at(time.Second),
			want: "hold:" + state.HoldUnsettled, wantUntil: at(p.Window), wantEvent: "held"},
		{name: "budget spent: held until the oldest failover leaves the window", c: dead,
			mem: mem(func(m *decide.Memory) {
				for i := range p.MaxFailovers {
					m.Failovers = append(m.Failovers, at(time.Duration(i)*10*time.Second))
				}
				m.LastChange = m.Failovers[len(m.Failovers)-1]
				m.SettledAt = m.LastChange.Add(p.Settle)
			}), now: at(100 * time.Second), want: "hold:" + state.HoldFlapping, wantUntil: at(p.Window), wantEvent: "held"},
		{name: "one failover less than the budget: failover", c: dead,
			mem: mem(func(m *decide.Memory) {
				for i := range p.MaxFailovers - 1 {
					m.Failovers = append(m.Failovers, at(time.Duration(i)*10*time.Second))
				}
				m.LastChange = m.Failovers[len(m.Failovers)-1]
				m.SettledAt = m.LastChange.Add(p.Settle)
			}), now: at(100 * time.Second), want: "failover"},
		{name: "failovers older than the window do not count", c: dead,
			mem: mem(func(m *decide.Memory) {
				for i := range p.MaxFailovers {
					m.Failovers = append(m.Failovers, at(time.Duration(i)*time.Second))
				}
				m.LastChange, m.SettledAt = at(9*time.Second), at(20*time.Second)
			}), now: at(p.Window + 9*time.Second), want: "failover"},
		{name: "operator release clears an unsettled hold", c: dead,
			mem: mem(func(m *decide.Memory) {
				m.Failovers, m.LastChange = []time.Time{at(0)}, at(0)
				m.Hold = &state.FailoverHold{Reason: state.HoldUnsettled, Since: at(time.Second), Until: at(p.Window)}
			}), release: release, now: at(21 * time.Second), want: "failover", wantEvent: "released"},
		{name: "an old release does not clear a newer hold", c: dead,
			mem: mem(func(m *decide.Memory) {
				m.ReleasedAt = release.At
				m.Failovers, m.LastChange = []time.Time{at(30 * time.Second)}, at(30*time.Second)
			}), release: release, now: at(32 * time.Second),
			want: "hold:" + state.HoldUnsettled, wantUntil: at(30*time.Second + p.Window), wantEvent: "held"},
		{name: "a release seen first after newer failovers keeps them", c: dead,
			mem: mem(func(m *decide.Memory) {
				m.Failovers, m.LastChange = []time.Time{at(30 * time.Second)}, at(30*time.Second)
			}),
			release: release, now: at(32 * time.Second),
			want: "hold:" + state.HoldUnsettled, wantUntil: at(30*time.Second + p.Window), wantEvent: "held"},
		{name: "a release does not lift a kill switch", c: dead, mem: mem(nil), switches: killAll, release: release,
			now: at(21 * time.Second), want: "hold:" + state.HoldKillSwitch, wantEvent: "released"},
		{name: "retry backoff after a failed attempt", c: dead,
			mem: mem(func(m *decide.Memory) { m.LastTry = at(0) }), now: at(p.RetryBackoff / 2), want: "backoff"},
		{name: "retry after the backoff", c: dead,
			mem: mem(func(m *decide.Memory) { m.LastTry = at(0) }), now: at(p.RetryBackoff), want: "failover"},
		{name: "hold lapses when no failover is called for", c: healthy,
			mem: mem(func(m *decide.Memory) { m.Hold = &state.FailoverHold{Reason: state.HoldKillSwitch} }),
			now: at(0), want: "recover", wantEvent: "hold_lapsed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			found := analysis.Analyze(tc.c)
			plan := decide.Decide(decide.Input{Cluster: tc.c, Found: found, Memory: tc.mem, Switches: tc.switches,
				Release: tc.release, Now: tc.now}, p)
			got := "recover"
			switch {
			case plan.Failover != nil:
				got = "failover"
				assert.Empty(t, plan.Recoveries)
				assert.Equal(t, []string{"r1", "r2"}, plan.Failover.Candidates)
			case plan.Hold != nil:
				got = "hold:" + plan.Hold.Reason
				assert.Equal(t, plan.Hold, plan.Memory.Hold, "the memory keeps the hold")
				assert.Equal(t, tc.wantUntil, plan.Hold.Until)
				assert.NotEmpty(t, plan.Hold.Detail)
			case plan.Backoff:
				got = "backoff"
			default:
				assert.Equal(t, found, plan.Recoveries)
				assert.Nil(t, plan.Memory.Hold)
			}
			assert.Equal(t, tc.want, got)
			var kinds []string
			for _, e := range plan.Events {
				kinds = append(kinds, e.Kind)
			}
			if tc.wantEvent == "" {
				assert.Empty(t, kinds)
			} else {
				assert.Contains(t, kinds, tc.wantEvent)
			}
		})
	}
}

// TestSettling walks one cluster through a failover, a healthy settle time
// and a second death: the second failover runs without a hold.
func TestSettling(t *testing.T) {
	p := decide.DefaultPolicy()
	m := mem(nil)
	step := func(c analysis.Cluster, now time.Time) decide.Plan {
		plan := decide.Decide(decide.Input{Cluster: c, Found: analysis.Analyze(c), Memory: m, Now: now}, p)
		m = plan.Memory
		return plan
	}
	require.NotNil(t, step(dead, at(0)).Failover)
	m = m.FailedOver(at(200 * time.Millisecond))
	// r1 is the new master; m1 stays dead (it does not stop the settling).
	after := cluster("r1", deadMaster("m1"), healthyMaster("r1"), healthyReplica("r2", "r1"))
	step(after, at(time.Second))
	assert.True(t, m.SettledAt.IsZero(), "healthy for 0s is not settled")
	step(after, at(time.Second+p.Settle))
	assert.Equal(t, at(time.Second+p.Settle), m.SettledAt)
	died := cluster("r1", deadMaster("m1"), deadMaster("r1"), lostReplica("r2", "r1"))
	plan := step(died, at(10*time.Second))
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.Equal(t, []string{"r2"}, plan.Failover.Candidates)
	assert.Equal(t, at(10*time.Second), plan.Failover.DetectedAt)
}

// TestFlapping: the promoted master dies before the cluster settled.
func TestFlapping(t *testing.T) {
	p := decide.DefaultPolicy()
	m := mem(nil).FailedOver(at(0))
	// Not healthy: r2 does not replicate yet.
	notYet := cluster("r1", deadMaster("m1"), healthyMaster("r1"), lostReplica("r2", "m1"))
	plan := decide.Decide(decide.Input{Cluster: notYet, Found: analysis.Analyze(notYet), Memory: m, Now: at(10 * time.Second)}, p)
	m = plan.Memory
	assert.True(t, m.HealthySince.IsZero())
	died := cluster("r1", deadMaster("m1"), deadMaster("r1"), lostReplica("r2", "r1"))
	plan = decide.Decide(decide.Input{Cluster: died, Found: analysis.Analyze(died), Memory: m, Now: at(11 * time.Second)}, p)
	require.NotNil(t, plan.Hold)
	assert.Equal(t, state.HoldUnsettled, plan.Hold.Reason)
	assert.Equal(t, at(p.Window), plan.Hold.Until)
	// The next cycle keeps the hold's start and reports no new event.
	again := decide.Decide(decide.Input{Cluster: died, Found: analysis.Analyze(died), Memory: plan.Memory, Now: at(12 * time.Second)}, p)
	require.NotNil(t, again.Hold)
	assert.Equal(t, at(11*time.Second), again.Hold.Since)
	assert.Empty(t, again.Events)
}

// TestFreshMasterGrace: without the budget (as the agent tests run), r1
// was promoted at 0 and r2, just pointed at it, is still connecting when
// one probe of r1 times out: that is no evidence that r1 died. The failover
// runs once r1 has been found dead for the grace, or at once when its port
// refuses connections, or when the cluster had settled.
func TestFreshMasterGrace(t *testing.T) {
	p := decide.DefaultPolicy()
	p.Settle, p.Window, p.MaxFailovers = 0, 0, 0
	fresh := mem(nil).FailedOver(at(0))
	missed := cluster("r1", deadMaster("m1"), deadMaster("r1"), lostReplica("r2", "r1"))
	back := cluster("r1", deadMaster("m1"), healthyMaster("r1"), lostReplica("r2", "r1"))
	run := func(c analysis.Cluster, m decide.Memory, now time.Time) decide.Plan {
		return decide.Decide(decide.Input{Cluster: c, Found: analysis.Analyze(c), Memory: m, Now: now}, p)
	}

	plan := run(missed, fresh, at(time.Second))
	assert.True(t, plan.Confirming, "one missed probe of a fresh master")
	assert.Nil(t, plan.Failover)
	assert.Nil(t, plan.Hold)
	assert.Empty(t, plan.Events, "no hold, no event")
	assert.Empty(t, plan.Recoveries)
	assert.Equal(t, at(time.Second), plan.Memory.DetectedAt)

	// The next probe answers: nothing was dead.
	plan = run(back, plan.Memory, at(time.Second+100*time.Millisecond))
	assert.False(t, plan.Confirming)
	assert.Nil(t, plan.Failover)
	assert.True(t, plan.Memory.DetectedAt.IsZero())

	// It is found dead again: the grace counts from this detection.
	plan = run(missed, plan.Memory, at(2*time.Second))
	assert.True(t, plan.Confirming)
	plan = run(missed, plan.Memory, at(2*time.Second+p.Grace-time.Millisecond))
	assert.True(t, plan.Confirming)
	plan = run(missed, plan.Memory, at(2*time.Second+p.Grace))
	require.NotNil(t, plan.Failover, "dead for the grace: failed over")
	assert.Equal(t, []string{"r2"}, plan.Failover.Candidates)
	assert.Equal(t, at(2*time.Second), plan.Failover.DetectedAt)

	// Connection refused: its process is gone, no grace.
	refused := cluster("r1", deadMaster("m1"), deadMaster("r1"), lostReplica("r2", "r1"))
	refused.Instances[1].Status.Refused = true
	plan = run(refused, fresh, at(time.Second))
	require.NotNil(t, plan.Failover, "a fresh master refusing connections")

	// Settled since its promotion: the replicas' word counts, no grace.
	settled := fresh
	settled.SettledAt = at(500 * time.Millisecond)
	plan = run(missed, settled, at(time.Second))
	require.NotNil(t, plan.Failover, "a settled master")

	// An operator's release ends the grace.
	rel := &state.HoldRelease{DC: "dc", Cluster: "db", By: "operator:ann", Reason: "r1 is gone", At: at(time.Second)}
	plan = decide.Decide(decide.Input{Cluster: missed, Found: analysis.Analyze(missed), Memory: fresh, Release: rel,
		Now: at(time.Second)}, p)
	require.NotNil(t, plan.Failover, "released")

	// No grace configured: the first missed probe fails it over (the
	// behaviour this replaces).
	p.Grace = 0
	require.NotNil(t, run(missed, fresh, at(time.Second)).Failover)
}

func TestHealthy(t *testing.T) {
	caught := time.Second
	assert.True(t, decide.Healthy(healthy, analysis.Analyze(healthy), caught))
	lagging := cluster("m1", healthyMaster("m1"), healthyReplica("r1", "m1"), healthyReplica("r2", "m1"))
	v := int64(3)
	lagging.Instances[2].Status.SecondsBehind = &v
	assert.False(t, decide.Healthy(lagging, analysis.Analyze(lagging), caught), "a replica 3s behind is not caught up")
	noAck := cluster("m1", healthyMaster("m1"), healthyReplica("r1", "m1"))
	noAck.Instances[0].Status.SemiSyncClients = 0
	assert.False(t, decide.Healthy(noAck, analysis.Analyze(noAck), caught), "semi-sync not acking")
	alone := cluster("m1", healthyMaster("m1"), deadMaster("r1"))
	assert.False(t, decide.Healthy(alone, analysis.Analyze(alone), caught), "no replica connected")
	oneDown := cluster("m1", healthyMaster("m1"), healthyReplica("r1", "m1"), deadMaster("r2"))
	assert.True(t, decide.Healthy(oneDown, analysis.Analyze(oneDown), caught), "an unreachable instance does not stop settling")
	assert.False(t, decide.Healthy(dead, analysis.Analyze(dead), caught))
}

// TestLossyHold: the master died at 0-1-10; the only reachable candidate r1
// received up to 0-1-7 and r2, which may hold the rest (semi-sync acked it),
// did not answer. The failover is held until r2 is back or the lossy wait
// runs out; then it runs and may promote a candidate that lacks what r2 was
// seen with.
func TestLossyHold(t *testing.T) {
	p := decide.DefaultPolicy()
	behind := lostReplica("r1", "m1")
	behind.Status.GTIDIOPos, behind.Status.GTIDBinlogPos, behind.Status.GTIDCurrentPos = "0-1-7", "0-1-7", "0-1-7"
	oneAway := cluster("m1", deadMaster("m1"), behind, deadMaster("r2"))
	run := func(c analysis.Cluster, m decide.Memory, now time.Time, rel *state.HoldRelease) decide.Plan {
		return decide.Decide(decide.Input{Cluster: c, Found: analysis.Analyze(c), Memory: m, Release: rel, Now: now}, p)
	}

	plan := run(oneAway, mem(nil), at(0), nil)
	require.NotNil(t, plan.Hold, "a failover losing 3 transactions while r2 may have them")
	assert.Equal(t, state.HoldLossy, plan.Hold.Reason)
	assert.Equal(t, at(p.LossyWait), plan.Hold.Until)
	assert.Contains(t, plan.Hold.Detail, "lacks 3 transactions")
	assert.Contains(t, plan.Hold.Detail, "r2")
	require.Len(t, plan.Events, 1)
	assert.Equal(t, "held", plan.Events[0].Kind)

	// Still away a little later: still held, from the same detection.
	later := run(oneAway, plan.Memory, at(p.LossyWait/2), nil)
	require.NotNil(t, later.Hold)
	assert.Equal(t, at(0), later.Hold.Since)

	// r2 is back with everything: it is the best candidate, no loss.
	back := cluster("m1", deadMaster("m1"), behind, lostReplica("r2", "m1"))
	plan = run(back, later.Memory, at(p.LossyWait/2+time.Second), nil)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.Equal(t, "r2", plan.Failover.Candidates[0])
	assert.False(t, plan.Failover.AcceptLoss)

	// r2 never comes back: the failover runs when the wait is over.
	plan = run(oneAway, later.Memory, at(p.LossyWait), nil)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.Equal(t, []string{"r1"}, plan.Failover.Candidates)
	assert.True(t, plan.Failover.AcceptLoss)

	// An operator's release ends the wait at once.
	rel := &state.HoldRelease{DC: "dc", Cluster: "db", By: "operator:ann", Reason: "r2 is gone", At: at(2 * time.Second)}
	plan = run(oneAway, later.Memory, at(3*time.Second), rel)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.True(t, plan.Failover.AcceptLoss)

	// Every replica answered: nothing to wait for, the loss is reported.
	allHere := cluster("m1", deadMaster("m1"), behind)
	plan = run(allHere, mem(nil), at(0), nil)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.False(t, plan.Failover.AcceptLoss, "the runner still must not pass over an unread candidate")

	// The candidate has all the master was seen with: no hold.
	full := cluster("m1", deadMaster("m1"), lostReplica("r1", "m1"), deadMaster("r2"))
	plan = run(full, mem(nil), at(0), nil)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)

	// No wait configured.
	p.LossyWait = 0
	plan = run(oneAway, mem(nil), at(0), nil)
	require.NotNil(t, plan.Failover, "hold: %+v", plan.Hold)
	assert.True(t, plan.Failover.AcceptLoss)
}
