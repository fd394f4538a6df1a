package state

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DCLease says a DC is alive as far as etcd can tell: the DC's active HA
// agent keeps it at /dcleases/<dc> on its election lease, so it vanishes
// when no agent of the DC can renew a lease (the DC is down, or cut off
// from etcd).
type DCLease struct {
	DC    string `json:"dc"`
	Agent string `json:"agent"`
	// Since is when this agent took the lease; TTL its lease's TTL.
	Since time.Time `json:"since"`
	TTL   Duration  `json:"ttl"`
}

// DCLeaseKey is the etcd key of dc's lease.
func (s *Store) DCLeaseKey(dc string) string { return s.Key("dcleases", dc) }

// PutDCLease writes the DC lease on lease, guarded by fence.
func (s *Store) PutDCLease(ctx context.Context, l DCLease, lease clientv3.LeaseID, fence *Fence) error {
	_, err := Put(ctx, s, s.DCLeaseKey(l.DC), l, PutOptions{PrevRev: -1, Lease: lease, Fence: fence})
	return err
}

// DCLeases returns the DC leases that exist, by DC.
func (s *Store) DCLeases(ctx context.Context) (map[string]DCLease, int64, error) {
	ls, rev, err := List[DCLease](ctx, s, s.Prefix("dcleases"))
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]DCLease, len(ls))
	for _, l := range ls {
		out[l.DC] = l
	}
	return out, rev, nil
}

// DCView is what one DC sees of another, written by the observer DC's
// coordinators at /dcviews/<observer>/<target> on their lease and renewed
// every probe interval.
type DCView struct {
	Observer string `json:"observer"`
	Target   string `json:"target"`
	// MastersReachable of MastersProbed answered a MySQL handshake from the
	// observer.
	MastersProbed    int `json:"masters_probed"`
	MastersReachable int `json:"masters_reachable"`
	// LinkKnown says whether the observer's inbound stream reported its
	// source from the target; LinkActiveAgo is then how long ago it last
	// heard from it and LinkError the source's error, if any.
	LinkKnown     bool      `json:"link_known"`
	LinkActiveAgo Duration  `json:"link_active_ago"`
	LinkError     string    `json:"link_error,omitempty"`
	ObservedAt    time.Time `json:"observed_at"`
	By            string    `json:"by"`
}

// DCViewKey is the etcd key of observer's view of target.
func (s *Store) DCViewKey(observer, target string) string { return s.Key("dcviews", observer, target) }

// PutDCView writes a view on lease.
func (s *Store) PutDCView(ctx context.Context, v DCView, lease clientv3.LeaseID) error {
	_, err := Put(ctx, s, s.DCViewKey(v.Observer, v.Target), v, PutOptions{PrevRev: -1, Lease: lease})
	return err
}

// DCViews returns every view of target, by observer.
func (s *Store) DCViews(ctx context.Context) ([]DCView, error) {
	vs, _, err := List[DCView](ctx, s, s.Prefix("dcviews"))
	return vs, err
}
