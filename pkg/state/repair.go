package state

import (
	"context"
	"time"
)

// RepairState is where the automatic repair of a deposed master is.
type RepairState string

// Repair states.
const (
	// RepairRewinding: the agent began to undo the instance's errant
	// transactions. A repair found in this state was interrupted; the
	// instance is then half rewound and is never rewound again.
	RepairRewinding RepairState = "REWINDING"
	// RepairRejoined: the instance replicates from the master again.
	RepairRejoined RepairState = "REJOINED"
	// RepairRefused: the agent could not prove the errant transactions
	// were never acknowledged (or repair is off); the instance is
	// quarantined with Reason.
	RepairRefused RepairState = "REFUSED"
	// RepairFailed: a step failed; Reason says which. It is retried unless
	// it failed after the rewind began.
	RepairFailed RepairState = "FAILED"
)

// RepairRecord is the account of the last automatic repair of one instance:
// a deposed master whose errant transactions were saved, undone and which
// was rejoined, or why it was not.
type RepairRecord struct {
	DC       string      `json:"dc"`
	Cluster  string      `json:"cluster"`
	Instance string      `json:"instance"`
	State    RepairState `json:"state"`
	// Master is the instance it was rejoined to (or was to be).
	Master string `json:"master"`
	// FailoverID is the failover that deposed it.
	FailoverID string `json:"failover_id,omitempty"`
	// Errant lists the discarded transactions (GTID ranges) and
	// Transactions counts them.
	Errant       string `json:"errant,omitempty"`
	Transactions int    `json:"transactions"`
	// Images is the file on the agent's host (Agent) holding the row
	// images of the discarded transactions, as mariadb-binlog prints them.
	Images string `json:"images,omitempty"`
	// Resume is the GTID position it was rejoined at (gtid_slave_pos).
	Resume string    `json:"resume,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	Agent  string    `json:"agent"`
}

// RepairKey is the etcd key of an instance's repair record.
func (s *Store) RepairKey(dc, cluster, instance string) string {
	return s.Key("repairs", dc, cluster, instance)
}

// PutRepair writes a repair record, guarded by fence when non-nil.
func (s *Store) PutRepair(ctx context.Context, r RepairRecord, fence *Fence) error {
	_, err := Put(ctx, s, s.RepairKey(r.DC, r.Cluster, r.Instance), r, PutOptions{PrevRev: -1, Fence: fence})
	return err
}

// Repair reads an instance's repair record (ErrNotFound when it has none).
func (s *Store) Repair(ctx context.Context, dc, cluster, instance string) (RepairRecord, error) {
	r, _, err := Get[RepairRecord](ctx, s, s.RepairKey(dc, cluster, instance))
	return r, err
}

// Repairs lists the repair records of one DC, or of every DC when dc is
// empty.
func (s *Store) Repairs(ctx context.Context, dc string) ([]RepairRecord, error) {
	p := s.Prefix("repairs")
	if dc != "" {
		p = s.Prefix("repairs", dc)
	}
	recs, _, err := List[RepairRecord](ctx, s, p)
	return recs, err
}

// Quarantine marks an instance the HA agent took out of service because
// it holds errant transactions it could not prove unacknowledged. An
// operator re-clones the instance, then deletes the mark.
type Quarantine struct {
	DC       string    `json:"dc"`
	Cluster  string    `json:"cluster"`
	Instance string    `json:"instance"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
}

// QuarantineKey is the etcd key of an instance's quarantine mark.
func (s *Store) QuarantineKey(dc, cluster, instance string) string {
	return s.Key("quarantine", dc, cluster, instance)
}

// Quarantines lists the quarantine marks of one DC, or of every DC when dc
// is empty.
func (s *Store) Quarantines(ctx context.Context, dc string) ([]Quarantine, error) {
	p := s.Prefix("quarantine")
	if dc != "" {
		p = s.Prefix("quarantine", dc)
	}
	recs, _, err := List[Quarantine](ctx, s, p)
	return recs, err
}
