package state

import (
	"context"
	"time"
)

// ClusterMemory is what the DC's active HA agent remembers about one
// cluster across cycles, kept in etcd so that a new active agent keeps the
// failover budget and holds of the one before it. Only the active agent
// writes it (fenced by its election).
type ClusterMemory struct {
	DC      string `json:"dc"`
	Cluster string `json:"cluster"`
	// Failovers are the times of the automatic failovers inside the budget
	// window, oldest first.
	Failovers []time.Time `json:"failovers,omitempty"`
	// LastChange is when the master last changed (failover or switchover).
	LastChange time.Time `json:"last_change,omitzero"`
	// SettledAt is when the cluster was first seen settled after
	// LastChange (healthy for the settle time); zero while it has not.
	SettledAt time.Time `json:"settled_at,omitzero"`
	// ReleasedAt is the time of the last operator release applied.
	ReleasedAt time.Time `json:"released_at,omitzero"`
	// Hold is set while an automatic failover is called for and held back.
	Hold *FailoverHold `json:"hold,omitempty"`
}

// Hold reasons.
const (
	// HoldKillSwitch: a kill switch covers the cluster.
	HoldKillSwitch = "killswitch"
	// HoldFlapping: the failover budget (K failovers within W) is spent.
	HoldFlapping = "flapping"
	// HoldUnsettled: the master promoted last failed before the cluster
	// settled.
	HoldUnsettled = "unsettled"
	// HoldLossy: the best candidate lacks transactions the master was last
	// seen with, and a replica that may hold them is unreachable; the hold
	// lapses when it is back or after the lossy wait.
	HoldLossy = "lossy"
)

// FailoverHold says why an automatic failover called for is not run.
type FailoverHold struct {
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
	// Until is when the hold lapses by itself; zero: only when its cause
	// goes (kill switch) or an operator releases it.
	Until time.Time `json:"until,omitzero"`
}

// HoldRelease is an operator's release of a cluster's failover hold: the
// agent forgets the failovers and master changes before At.
type HoldRelease struct {
	DC      string    `json:"dc"`
	Cluster string    `json:"cluster"`
	By      string    `json:"by"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// MemoryKey is the etcd key of a cluster's memory.
func (s *Store) MemoryKey(dc, cluster string) string { return s.Key("hamemory", dc, cluster) }

// HoldReleaseKey is the etcd key of a cluster's hold release.
func (s *Store) HoldReleaseKey(dc, cluster string) string { return s.Key("holdrelease", dc, cluster) }

// PutMemory writes a cluster's memory under the fence.
func (s *Store) PutMemory(ctx context.Context, m ClusterMemory, fence *Fence) error {
	_, err := Put(ctx, s, s.MemoryKey(m.DC, m.Cluster), m, PutOptions{PrevRev: -1, Fence: fence})
	return err
}

// Memories lists the cluster memories of one DC, or of every DC when dc is
// empty.
func (s *Store) Memories(ctx context.Context, dc string) ([]ClusterMemory, error) {
	p := s.Prefix("hamemory")
	if dc != "" {
		p = s.Prefix("hamemory", dc)
	}
	recs, _, err := List[ClusterMemory](ctx, s, p)
	return recs, err
}

// PutHoldRelease records an operator's release.
func (s *Store) PutHoldRelease(ctx context.Context, r HoldRelease) error {
	_, err := Put(ctx, s, s.HoldReleaseKey(r.DC, r.Cluster), r, PutOptions{PrevRev: -1})
	return err
}
