package elect_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/elect"
)

func TestHandoffOnShutdown(t *testing.T) {
	c := harness.StartEtcd(t, 1)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	a := g.start("agent-a", harness.EtcdClientFor(t, c), nil)
	b := g.start("agent-b", harness.EtcdClientFor(t, c), nil)
	leader, standby := g.oneLeader(a, b)
	old := leader.last()
	require.NotNil(t, old)
	assert.Equal(t, 1.0, leader.metric("drplane_haagent_leader"))
	assert.Equal(t, 0.0, standby.metric("drplane_haagent_leader"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	key := g.st.Key("test", "fenced")
	_, err := state.Put(ctx, g.st, key, "by the first leader", state.PutOptions{PrevRev: -1, Fence: &old.l.Fence})
	require.NoError(t, err)

	leader.cancel(nil)
	handoff := check.For(t, 5*time.Second, time.Millisecond, func() error { return check.That(standby.leads(), "standby leads after a shutdown") })
	t.Logf("handoff after a normal shutdown: %v", handoff)
	leader.wait()
	select {
	case <-old.ended:
	default:
		t.Fatal("the old leader's lead is still running")
	}
	assert.Equal(t, 0, len(leader.fenceCalls()))

	cur := standby.last()
	require.NotNil(t, cur)
	require.NotEqual(t, old.l.Fence, cur.l.Fence, "a new tenure has a new fencing token")
	require.Greater(t, cur.l.Fence.Rev, old.l.Fence.Rev)
	require.NotEqual(t, old.l.Lease, cur.l.Lease)
	assert.Equal(t, standby.id, g.leader(standby))

	_, err = state.Put(ctx, g.st, key, "by the deposed leader", state.PutOptions{PrevRev: -1, Fence: &old.l.Fence})
	require.ErrorIs(t, err, state.ErrFenced)
	_, err = state.Put(ctx, g.st, key, "by the new leader", state.PutOptions{PrevRev: -1, Fence: &cur.l.Fence})
	require.NoError(t, err)
	got, _, err := state.Get[string](ctx, g.st, key)
	require.NoError(t, err)
	assert.Equal(t, "by the new leader", got)

	// The old leader revoked its lease on the way out.
	ttl, err := g.checker.TimeToLive(ctx, old.l.Lease)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "lease revoked at shutdown")
}

func TestCrashStandbyWaitsForLease(t *testing.T) {
	c := harness.StartEtcd(t, 1)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	a := g.start("agent-a", harness.EtcdClientFor(t, c), nil)
	b := g.start("agent-b", harness.EtcdClientFor(t, c), nil)
	leader, standby := g.oneLeader(a, b)
	old := leader.last()

	leader.stop(elect.ErrAbandon)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ttl, err := g.checker.TimeToLive(ctx, old.l.Lease)
	require.NoError(t, err)
	require.GreaterOrEqual(t, ttl.TTL, int64(0), "an abandoned lease is not revoked")
	require.Contains(t, g.candidacies(), old.l.Fence.Key, "an abandoned candidacy is not resigned")
	require.False(t, standby.el.IsLeader(), "the standby waits for the lease")

	took := check.For(t, 10*time.Second, time.Millisecond, func() error { return check.That(standby.leads(), "standby leads after the crashed leader's lease") })
	t.Logf("handoff after a crash (lease TTL %ds): %v", ttl.GrantedTTL, took)
	ttl, err = g.checker.TimeToLive(ctx, old.l.Lease)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "the standby led only once the lease had expired")
	assert.NotEqual(t, old.l.Fence, standby.last().l.Fence)
}

func TestSelfFenceWhenCutOff(t *testing.T) {
	const ttl, fenceBefore = 5 * time.Second, 2500 * time.Millisecond
	tune := func(o *elect.Options) { o.TTL, o.FenceBefore = ttl, fenceBefore }
	c := harness.StartEtcd(t, 1)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	proxy := harness.Toxiproxy(t, "etcd-agent-a", strings.TrimPrefix(c.Members()[0].ClientURL(), "http://"))
	a := g.start("agent-a", dial(t, "http://"+proxy.Listen()), tune)
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error { return check.That(a.leads(), "agent-a leads") })
	b := g.start("agent-b", harness.EtcdClientFor(t, c), tune)
	leader, standby := g.oneLeader(a, b)
	require.Equal(t, a, leader)
	old := a.last()

	cut := time.Now()
	proxy.Cut()
	check.For(t, ttl, 5*time.Millisecond, func() error { return check.That(len(a.fenceCalls()) > 0, "SelfFence called") })
	fc := a.fenceCalls()[0]
	t.Logf("cut → SelfFence: %v (reason: %s)", fc.at.Sub(cut), fc.reason)
	require.NoError(t, fc.ttlErr)
	require.Equal(t, old.l.Lease, fc.lease)
	require.Greater(t, fc.ttl, int64(0), "the lease still stood when SelfFence was called")
	assert.Contains(t, fc.reason, "out of reach")

	check.For(t, 2*ttl, 5*time.Millisecond, func() error { return check.That(standby.leads(), "standby leads after the cut") })
	t.Logf("cut → standby leads: %v", time.Since(cut))
	require.False(t, a.el.IsLeader())
	select {
	case <-old.ended:
	default:
		t.Fatal("the cut-off leader's tenure did not end")
	}
	require.ErrorIs(t, context.Cause(old.l.Ctx), elect.ErrSelfFenced)
	require.True(t, fc.at.Before(standby.last().l.Since), "fenced before the standby was elected")
	assert.Equal(t, 1.0, a.metric("drplane_haagent_self_fence_total"))
	assert.Equal(t, 0.0, a.metric("drplane_haagent_leader"))

	restored := time.Now()
	proxy.Restore()
	bKey := standby.last().l.Fence.Key
	check.For(t, 15*time.Second, 20*time.Millisecond, func() error {
		keys := g.candidacies()
		return check.That(len(keys) == 2 && slices.Contains(keys, bKey) && !slices.Contains(keys, old.l.Fence.Key), "agent-a campaigns again")
	})
	t.Logf("restore → agent-a a candidate again: %v", time.Since(restored))
	assert.False(t, a.el.IsLeader(), "the fenced agent comes back as a follower")
	assert.Equal(t, 1, a.tenureCount())
	assert.Equal(t, b.id, g.leader(a))
	assert.Len(t, a.fenceCalls(), 1)
}

func TestQuorumLossSinglePointPrimary(t *testing.T) {
	// The renewal age that starts the watchdog (TTL − FenceBefore = 3s) must
	// exceed the client's renewal period (TTL/3 on a 500 ms grid), and the
	// decision must end (by TTL − FenceBefore/2 after the last renewal) after
	// the lone member has noticed its leader is gone (≤ ~1 s here).
	const ttl, fenceBefore = 4 * time.Second, time.Second
	tune := func(o *elect.Options) { o.TTL, o.FenceBefore = ttl, fenceBefore }
	c := harness.StartEtcd(t, 3)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	a := g.start("agent-a", dial(t, c.Members()[0].ClientURL()), tune)
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error { return check.That(a.leads(), "agent-a leads") })
	b := g.start("agent-b", dial(t, c.Endpoints()...), tune)
	leader, _ := g.oneLeader(a, b)
	require.Equal(t, a, leader)
	ten := a.last()

	stopped := time.Now()
	require.NoError(t, c.StopMember(1))
	require.NoError(t, c.StopMember(2))
	spp := check.For(t, 2*ttl, 5*time.Millisecond, func() error { return check.That(a.el.SinglePointPrimary(), "single-point primary") })
	t.Logf("quorum lost → single-point primary: %v", spp)
	assert.Equal(t, 1.0, a.metric("drplane_haagent_single_point_primary"))
	// Hold the outage for 2×TTL: the leader must neither fence nor lose its tenure.
	check.For(t, 3*ttl, 20*time.Millisecond, func() error {
		require.Empty(t, a.fenceCalls(), "no self-fence while etcd has no quorum")
		require.True(t, a.el.IsLeader())
		require.True(t, a.el.SinglePointPrimary())
		require.NoError(t, ten.l.Ctx.Err(), "the tenure goes on")
		require.False(t, b.el.IsLeader())
		return check.That(time.Since(stopped) >= 2*ttl, "2×TTL without quorum")
	})

	restarted := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.RestartMember(ctx, 1))
	require.NoError(t, c.RestartMember(ctx, 2))
	t.Logf("members restarted in %v", time.Since(restarted))
	back := check.For(t, 3*ttl, 5*time.Millisecond, func() error { return check.That(!a.el.SinglePointPrimary(), "single-point primary over") })
	t.Logf("→ single-point primary over %v later, %v after the restart began", back, time.Since(restarted))
	require.True(t, a.el.IsLeader())
	require.NoError(t, ten.l.Ctx.Err())
	assert.Equal(t, 1, a.tenureCount(), "the same tenure throughout")
	assert.Equal(t, a.id, g.leader(a))
	assert.Empty(t, a.fenceCalls())
	assert.Equal(t, 0.0, a.metric("drplane_haagent_single_point_primary"))
	assert.Equal(t, 0.0, a.metric("drplane_haagent_self_fence_total"))
	// The lease really is renewed again.
	lease, err := g.checker.TimeToLive(ctx, ten.l.Lease)
	require.NoError(t, err)
	assert.Greater(t, lease.TTL, int64(0))
	assert.False(t, b.el.IsLeader())
}

// TestSinglePointPrimaryIsBounded: the leader talks to one member of three;
// the other two stop. Its member answers "no leader" as for a lost quorum,
// but the agent cannot tell that from being cut off with a minority member
// while the majority elects another agent. Past SinglePointLimit it asks
// every member, finds no majority answering without a leader, and fences.
func TestSinglePointPrimaryIsBounded(t *testing.T) {
	const ttl, fenceBefore, limit = 4 * time.Second, time.Second, 3 * time.Second
	tune := func(o *elect.Options) { o.TTL, o.FenceBefore, o.SinglePointLimit = ttl, fenceBefore, limit }
	c := harness.StartEtcd(t, 3)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	a := g.start("agent-a", dial(t, c.Members()[0].ClientURL()), tune)
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error { return check.That(a.leads(), "agent-a leads") })
	ten := a.last()

	stopped := time.Now()
	require.NoError(t, c.StopMember(1))
	require.NoError(t, c.StopMember(2))
	check.For(t, 2*ttl, 5*time.Millisecond, func() error { return check.That(a.el.SinglePointPrimary(), "single-point primary") })
	// The limit counts from the last renewal, at most TTL/3 before the stop;
	// the decision takes a watchdog tick and up to FenceBefore/2.
	check.For(t, limit+2*ttl, 5*time.Millisecond, func() error { return check.That(len(a.fenceCalls()) > 0, "SelfFence called") })
	fc := a.fenceCalls()[0]
	t.Logf("members stopped → SelfFence: %v (reason: %s)", fc.at.Sub(stopped), fc.reason)
	assert.Contains(t, fc.reason, "no majority of the 3 etcd members")
	assert.Contains(t, fc.reason, "(limit 3s)")
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error { return check.That(ten.l.Ctx.Err() != nil, "the tenure ended") })
	require.ErrorIs(t, context.Cause(ten.l.Ctx), elect.ErrSelfFenced)
	assert.False(t, a.el.IsLeader())
	assert.False(t, a.el.SinglePointPrimary())

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.RestartMember(ctx, 1))
	require.NoError(t, c.RestartMember(ctx, 2))
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error { return check.That(a.leads(), "agent-a leads again") })
	assert.Equal(t, 2, a.tenureCount())
}

func TestRevokedLeaseEndsTenure(t *testing.T) {
	c := harness.StartEtcd(t, 1)
	g := newGroup(t, harness.EtcdClientFor(t, c))
	g.mayOverlap = true
	a := g.start("agent-a", harness.EtcdClientFor(t, c), nil)
	b := g.start("agent-b", harness.EtcdClientFor(t, c), nil)
	leader, standby := g.oneLeader(a, b)
	old := leader.last()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	began := time.Now()
	_, err := g.checker.Revoke(ctx, old.l.Lease)
	require.NoError(t, err)
	took := check.For(t, 5*time.Second, time.Millisecond, func() error { return check.That(old.l.Ctx.Err() != nil, "tenure ends") })
	t.Logf("lease revoked → tenure ended: %v", took)
	require.ErrorIs(t, context.Cause(old.l.Ctx), elect.ErrLeaseLost)
	check.For(t, 5*time.Second, time.Millisecond, func() error { return check.That(standby.leads(), "standby leads") })
	t.Logf("lease revoked → standby leads: %v", time.Since(began))
	// SelfFence runs after the tenure ended (the lease is already gone, so
	// nothing orders it before the standby's election); the test's SelfFence
	// records its call only once its own etcd read returned, so it is polled
	// for rather than expected at once.
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		return check.That(len(leader.fenceCalls()) > 0, "the old leader called SelfFence")
	})
	calls := leader.fenceCalls()
	require.Len(t, calls, 1, "a leader whose lease is gone fences itself, once")
	assert.Contains(t, calls[0].reason, "lease lost")
	// The old leader campaigns again as a follower.
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error { return check.That(len(g.candidacies()) == 2, "old leader campaigns again") })
	assert.False(t, leader.el.IsLeader())
	assert.Equal(t, standby.id, g.leader(standby))
}
