// Package dclive decides, on the coordinator leader, whether a whole DC is
// lost. The decision is holistic: a DC is LOST only when its DC lease (kept
// by its active HA agent) has been gone for a grace period AND every other
// live DC confirms from its own side that it cannot reach it — its masters
// do not answer, its NATS link is down, nothing was applied from it since
// the lease went. A DC whose lease expired while others still see it
// working is an etcd-side problem, not a DC loss, and is never failed over.
//
// The failure model is data: Codes lists every verdict with its
// description and order, Assess is a pure function of an Input, and the
// Watcher feeds it from etcd.
package dclive

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/state"
)

// Code is one verdict about a DC.
type Code string

// Codes, in the order Assess tries them.
const (
	// Alive: the DC's lease is held.
	Alive Code = "DCAlive"
	// NeverSeen: the lease is gone and the DC was never seen alive (its
	// lease held, or peers seeing it working): it has not started yet, or
	// etcd lost its history. Not failed over; an operator decides.
	NeverSeen Code = "DCNeverSeen"
	// LeaseGrace: the lease is gone, for less than the grace.
	LeaseGrace Code = "DCLeaseGrace"
	// SeenByPeers: the lease is gone, but a live DC still reaches the DC's
	// masters, hears from its NATS, or applied from it since (within the
	// link's dead time): an etcd-side problem. Not failed over.
	SeenByPeers Code = "DCLeaseLostSeenByPeers"
	// NoPeers: the lease is gone and no other DC is alive to confirm.
	NoPeers Code = "DCLeaseLostNoPeers"
	// Unconfirmed: the lease is gone and some live DC has not reported a
	// fresh view of it yet.
	Unconfirmed Code = "DCLeaseLostUnconfirmed"
	// Lost: the lease is gone and every live DC confirms the DC is
	// unreachable. Its shards are failed over to their backups.
	Lost Code = "DCLost"
)

// Description is one code's entry of the failure model.
type Description struct {
	Code Code
	// Summary says what the code means; Action what the leader does.
	Summary, Action string
	// Failover is true for the one code that triggers a city failover.
	Failover bool
}

// Codes is the failure model of whole DCs, in the order Assess decides.
var Codes = []Description{
	{Code: Alive, Summary: "the DC's lease is held by its active HA agent", Action: "nothing"},
	{Code: NeverSeen, Summary: "the DC's lease is gone and the DC was never seen alive (it has not started yet)", Action: "nothing: an operator decides"},
	{Code: LeaseGrace, Summary: "the DC's lease is gone for less than the grace period", Action: "wait"},
	{Code: SeenByPeers, Summary: "the DC's lease is gone but another DC still reaches its masters, hears from its NATS or applied from it since (an etcd-side problem)", Action: "nothing: not failed over"},
	{Code: NoPeers, Summary: "the DC's lease is gone and no other DC is alive to confirm the loss", Action: "hold: an operator decides"},
	{Code: Unconfirmed, Summary: "the DC's lease is gone and some live DC has not reported a fresh view of it", Action: "wait for the views"},
	{Code: Lost, Summary: "the DC's lease is gone and every live DC confirms it cannot reach the DC", Action: "city failover of its shards to their backups", Failover: true},
}

// Describe returns the entry of code.
func Describe(c Code) (Description, bool) {
	for _, d := range Codes {
		if d.Code == c {
			return d, true
		}
	}
	return Description{}, false
}

// Thresholds tune Assess.
type Thresholds struct {
	// Grace is how long the lease must be gone before peers are asked.
	Grace time.Duration
	// ViewMaxAge: a peer's view older than this is not fresh.
	ViewMaxAge time.Duration
	// LinkDead: a NATS source silent at least this long is down.
	LinkDead time.Duration
}

// DefaultThresholds suit the lab's 1 s probes and 5 s agent leases.
var DefaultThresholds = Thresholds{Grace: time.Second, ViewMaxAge: 3 * time.Second, LinkDead: 3 * time.Second}

// Peer is one other DC as evidence about the target.
type Peer struct {
	DC string
	// Alive is whether the peer's own lease is held.
	Alive bool
	// View is the peer's view of the target; nil when it has none.
	View *state.DCView
	// LastApplied is when the peer's collector last applied a change from
	// the target (zero: never, or unknown).
	LastApplied time.Time
}

// Input is everything Assess looks at for one DC.
type Input struct {
	DC  string
	Now time.Time
	// LeaseHeld is whether the DC's lease exists; LeaseGoneSince is when
	// the leader first saw it missing.
	LeaseHeld      bool
	LeaseGoneSince time.Time
	// LastSeen is when a leader last saw the DC alive (its lease held, or
	// a peer seeing it working); zero: never.
	LastSeen time.Time
	Peers    []Peer
}

// Verdict is Assess's answer.
type Verdict struct {
	Code Code
	// Reason explains the code with the evidence, for logs and status.
	Reason string
	// Witnesses are the live peers whose views confirmed a loss.
	Witnesses []string
}

// Assess decides about one DC. It is pure: the same input gives the same
// verdict.
func Assess(in Input, th Thresholds) Verdict {
	if in.LeaseHeld {
		return Verdict{Code: Alive, Reason: "lease held"}
	}
	if in.LastSeen.IsZero() {
		return Verdict{Code: NeverSeen, Reason: "lease gone and the DC was never seen alive"}
	}
	gone := in.Now.Sub(in.LeaseGoneSince)
	if gone < th.Grace {
		return Verdict{Code: LeaseGrace, Reason: fmt.Sprintf("lease gone for %s (grace %s)", gone.Round(time.Millisecond), th.Grace)}
	}
	var live []Peer
	for _, p := range in.Peers {
		if p.Alive && p.DC != in.DC {
			live = append(live, p)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].DC < live[j].DC })
	var seen, stale []string
	for _, p := range live {
		if !p.LastApplied.IsZero() && !p.LastApplied.Before(in.LeaseGoneSince) && in.Now.Sub(p.LastApplied) < th.LinkDead {
			seen = append(seen, p.DC+" applied from it at "+p.LastApplied.UTC().Format(time.RFC3339Nano))
			continue
		}
		v := p.View
		if v != nil && in.Now.Sub(v.ObservedAt) <= th.ViewMaxAge {
			if v.MastersReachable > 0 {
				seen = append(seen, fmt.Sprintf("%s reaches %d of %d masters", p.DC, v.MastersReachable, v.MastersProbed))
				continue
			}
			if v.LinkKnown && v.LinkError == "" && time.Duration(v.LinkActiveAgo) < th.LinkDead {
				seen = append(seen, fmt.Sprintf("%s heard from its NATS %s ago", p.DC, time.Duration(v.LinkActiveAgo)))
				continue
			}
		}
		if v == nil || in.Now.Sub(v.ObservedAt) > th.ViewMaxAge || v.ObservedAt.Before(in.LeaseGoneSince) {
			stale = append(stale, p.DC)
		}
	}
	switch {
	case len(seen) > 0:
		return Verdict{Code: SeenByPeers, Reason: "lease gone but " + strings.Join(seen, "; ")}
	case len(live) == 0:
		return Verdict{Code: NoPeers, Reason: "lease gone and no other DC is alive"}
	case len(stale) > 0:
		return Verdict{Code: Unconfirmed, Reason: "no fresh view from " + strings.Join(stale, ", ")}
	}
	w := make([]string, len(live))
	for i, p := range live {
		w[i] = p.DC
	}
	return Verdict{
		Code:      Lost,
		Reason:    fmt.Sprintf("lease gone for %s; %s cannot reach its masters or NATS and applied nothing from it since", gone.Round(time.Millisecond), strings.Join(w, ", ")),
		Witnesses: w,
	}
}
