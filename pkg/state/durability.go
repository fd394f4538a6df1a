package state

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NATSSync is a DC's NATS server's JetStream flush setting, as a service of
// the DC read it from the server's monitoring endpoint. It decides whether
// a message JetStream acknowledged survives an OS crash of the server's host.
type NATSSync struct {
	DC string `json:"dc"`
	// Reporter is the id of the service process that read it.
	Reporter string `json:"reporter"`
	// Always: the server flushes every write before acknowledging it.
	Always bool `json:"always"`
	// Interval, without Always, is how often the server flushes.
	Interval time.Duration `json:"interval,omitempty"`
	// Error says why the setting could not be read (then Always and
	// Interval mean nothing).
	Error      string    `json:"error,omitempty"`
	ObservedAt time.Time `json:"observed_at"`
}

// PutNATSSync publishes what a service read on its lease.
func (s *Store) PutNATSSync(ctx context.Context, rec NATSSync, lease clientv3.LeaseID) error {
	_, err := Put(ctx, s, s.Key("natssync", rec.DC, rec.Reporter), rec, PutOptions{PrevRev: -1, Lease: lease})
	return err
}

// NATSSyncs lists the reported settings, of one DC or all when dc is empty.
func (s *Store) NATSSyncs(ctx context.Context, dc string) ([]NATSSync, error) {
	p := s.Prefix("natssync")
	if dc != "" {
		p = s.Prefix("natssync", dc)
	}
	recs, _, err := List[NATSSync](ctx, s, p)
	return recs, err
}
