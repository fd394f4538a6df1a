// Package cityfail is the city failover: when the leader declares a DC
// LOST (package dclive), or an operator asks, every shard the DC owns
// moves to its backup DC at once, in fenced etcd transactions, with no
// catch-up (the DC cannot be reached). Each flipped shard is fenced at the
// lost DC's last watermark seen at the new owner, so what the DC captured
// after it becomes divergence when it returns (shardmap.Diverged), never
// an overwrite. The loss is estimated at flip time — requests the ledger
// knows were captured in the lost DC and not applied at the new owner,
// and the window of writes that may not have reached it — and recorded on
// the operation and in the audit log. Policy: auto_city_failover (global
// and per keyspace), the kill switches and the keyspaces' max_rpo budget
// hold automatic flips for an operator.
package cityfail

import (
	"context"
	"time"

	"github.com/drplane/drplane/pkg/state"
)

// State is where a city failover is.
type State string

// States.
const (
	// Running: planned, shards being flipped.
	Running State = "RUNNING"
	// Done: every shard of the DC was flipped.
	Done State = "DONE"
	// Held: some or all shards were not flipped (policy); an operator can
	// flip them with accept_loss.
	Held State = "HELD"
	// Failed: the flip could not be written.
	Failed State = "FAILED"
)

// ShardFlip is one shard of the lost DC.
type ShardFlip struct {
	Keyspace string `json:"keyspace"`
	Shard    int    `json:"shard"`
	From     string `json:"from"`
	To       string `json:"to,omitempty"`
	// Fence is the lost DC's watermark at the new owner: everything it
	// captured for the shard up to it was applied there.
	Fence string `json:"fence,omitempty"`
	// LagBound is the window of the lost DC's writes that may not have
	// reached the new owner (-1: unknown).
	LagBound state.Duration `json:"lag_bound"`
	// LedgerMissing counts the requests the ledger knows were captured in
	// the lost DC for this shard and not applied at the new owner.
	LedgerMissing int `json:"ledger_missing"`
	// Flipped says whether the shard moved; Held why not.
	Flipped bool   `json:"flipped"`
	Held    string `json:"held,omitempty"`
}

// Estimate is the loss estimated at flip time.
type Estimate struct {
	// Requests are the ids the ledger knows were captured and not applied
	// at the new owners (at most maxListed; RequestsTotal counts all).
	Requests      []string `json:"requests,omitempty"`
	RequestsTotal int      `json:"requests_total"`
	// MaxLagBound is the largest shard's LagBound (-1: some unknown).
	MaxLagBound state.Duration `json:"max_lag_bound"`
}

// Record is one city failover, at /cityfailovers/<id>.
type Record struct {
	ID string `json:"id"`
	DC string `json:"dc"`
	// Trigger is "automatic" or "operator:<actor>".
	Trigger    string `json:"trigger"`
	AcceptLoss bool   `json:"accept_loss,omitempty"`
	State      State  `json:"state"`
	// Verdict is the liveness code and reason that declared the DC lost.
	Verdict        string    `json:"verdict,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	Witnesses      []string  `json:"witnesses,omitempty"`
	LeaseGoneSince time.Time `json:"lease_gone_since,omitzero"`
	StartedAt      time.Time `json:"started_at"`
	// FlippedAt is when the last flip transaction committed; FlipTook is
	// StartedAt → FlippedAt.
	FlippedAt time.Time      `json:"flipped_at,omitzero"`
	FlipTook  state.Duration `json:"flip_took,omitempty"`
	// Held is why the failover (or some shards) was held.
	Held     string      `json:"held,omitempty"`
	Error    string      `json:"error,omitempty"`
	Shards   []ShardFlip `json:"shards"`
	Estimate Estimate    `json:"estimate"`
	// MapRevision is the etcd revision of the last flip.
	MapRevision int64 `json:"map_revision,omitempty"`
}

// Flipped counts the shards that moved.
func (r Record) Flipped() int {
	n := 0
	for _, s := range r.Shards {
		if s.Flipped {
			n++
		}
	}
	return n
}

// Key is the etcd key of a record.
func Key(st *state.Store, id string) string { return st.Key("cityfailovers", id) }

// Get reads one record.
func Get(ctx context.Context, st *state.Store, id string) (Record, error) {
	r, _, err := state.Get[Record](ctx, st, Key(st, id))
	return r, err
}

// List returns every record, oldest first.
func List(ctx context.Context, st *state.Store) ([]Record, error) {
	rs, _, err := state.List[Record](ctx, st, st.Prefix("cityfailovers"))
	return rs, err
}
