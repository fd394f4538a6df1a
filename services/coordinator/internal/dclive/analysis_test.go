package dclive

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
)

func TestAssess(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	gone := t0.Add(-5 * time.Second)
	seen := gone.Add(-time.Second)
	dead := func(observer string) *state.DCView {
		return &state.DCView{Observer: observer, Target: "dc-a1", MastersProbed: 1, ObservedAt: t0.Add(-500 * time.Millisecond),
			LinkKnown: true, LinkActiveAgo: state.Duration(6 * time.Second)}
	}
	with := func(v *state.DCView, f func(*state.DCView)) *state.DCView { c := *v; f(&c); return &c }
	for _, tc := range []struct {
		name      string
		in        Input
		want      Code
		witnesses []string
	}{
		{name: "lease held", in: Input{LeaseHeld: true}, want: Alive},
		{name: "never seen alive: not started yet", in: Input{LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")},
		}}, want: NeverSeen},
		{name: "lease just gone", in: Input{LastSeen: seen, LeaseGoneSince: t0.Add(-300 * time.Millisecond)}, want: LeaseGrace},
		{name: "every live peer confirms", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")}, {DC: "dc-a2", Alive: true, View: dead("dc-a2")},
		}}, want: Lost, witnesses: []string{"dc-a2", "dc-b1"}},
		{name: "a dead peer is not asked", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")}, {DC: "dc-a2", Alive: false},
		}}, want: Lost, witnesses: []string{"dc-b1"}},
		{name: "a peer reaches a master: etcd-side problem", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")},
			{DC: "dc-a2", Alive: true, View: with(dead("dc-a2"), func(v *state.DCView) { v.MastersReachable = 1 })},
		}}, want: SeenByPeers},
		{name: "a peer's NATS link is up", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: with(dead("dc-b1"), func(v *state.DCView) { v.LinkActiveAgo = state.Duration(time.Second) })},
		}}, want: SeenByPeers},
		{name: "a link with an error is down even if recently active", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: with(dead("dc-b1"), func(v *state.DCView) {
				v.LinkActiveAgo, v.LinkError = state.Duration(time.Second), "consumer gone"
			})},
		}}, want: Lost, witnesses: []string{"dc-b1"}},
		{name: "a peer applied from it after the lease went", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1"), LastApplied: t0.Add(-time.Second)},
		}}, want: SeenByPeers},
		{name: "applied after the lease went, but not lately", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1"), LastApplied: t0.Add(-4 * time.Second)},
		}}, want: Lost, witnesses: []string{"dc-b1"}},
		{name: "applied before the lease went is no evidence", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1"), LastApplied: gone.Add(-time.Second)},
		}}, want: Lost, witnesses: []string{"dc-b1"}},
		{name: "a stale view", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")},
			{DC: "dc-a2", Alive: true, View: with(dead("dc-a2"), func(v *state.DCView) { v.ObservedAt = t0.Add(-10 * time.Second) })},
		}}, want: Unconfirmed},
		{name: "a view from before the lease went", in: Input{LastSeen: seen, LeaseGoneSince: t0.Add(-2 * time.Second), Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: with(dead("dc-b1"), func(v *state.DCView) { v.ObservedAt = t0.Add(-2500 * time.Millisecond) })},
		}}, want: Unconfirmed},
		{name: "a live peer without a view", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: dead("dc-b1")}, {DC: "dc-a2", Alive: true},
		}}, want: Unconfirmed},
		{name: "a reachable master outweighs a missing view", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-b1", Alive: true, View: with(dead("dc-b1"), func(v *state.DCView) { v.MastersReachable = 1 })}, {DC: "dc-a2", Alive: true},
		}}, want: SeenByPeers},
		{name: "no live peer", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{{DC: "dc-b1"}}}, want: NoPeers},
		{name: "the DC itself is not its own witness", in: Input{LastSeen: seen, LeaseGoneSince: gone, Peers: []Peer{
			{DC: "dc-a1", Alive: true, View: dead("dc-a1")},
		}}, want: NoPeers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.DC, tc.in.Now = "dc-a1", t0
			v := Assess(tc.in, DefaultThresholds)
			assert.Equal(t, tc.want, v.Code, v.Reason)
			assert.NotEmpty(t, v.Reason)
			assert.Equal(t, tc.witnesses, v.Witnesses)
			d, ok := Describe(v.Code)
			require.True(t, ok)
			assert.Equal(t, v.Code == Lost, d.Failover)
		})
	}
}

func TestCodesAreDescribedOnce(t *testing.T) {
	seen := map[Code]bool{}
	failover := 0
	for _, d := range Codes {
		require.False(t, seen[d.Code], "code %s twice", d.Code)
		seen[d.Code] = true
		require.NotEmpty(t, d.Summary)
		require.NotEmpty(t, d.Action)
		if d.Failover {
			failover++
		}
	}
	require.Equal(t, 1, failover, "exactly one code fails a DC over")
	_, ok := Describe("nonsense")
	require.False(t, ok)
}
