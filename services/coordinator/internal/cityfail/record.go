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
//
// A failover is a crash-safe operation in etcd, stored with the other
// long-running operations at /operations/<id> (kind city_failover): the
// leader's Runner stores it PENDING when the watcher declares a DC LOST
// (Declare) or an operator asks, then runs it (RUNNING, the fenced flips,
// the final state written with the last flip). A leader that dies leaves
// the record PENDING or RUNNING; the next leader runs it again, and the
// shards already flipped by it (owner changed, fence of this operation)
// are recognised, not moved twice.
package cityfail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/drplane/drplane/pkg/state"
)

// State is where a city failover is.
type State string

// KindCityFailover is the operation kind of a record at /operations/<id>.
const KindCityFailover = "city_failover"

// States.
const (
	// Pending: stored, not started by a leader yet.
	Pending State = "PENDING"
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
	// Requests are the ids the ledger knows were captured for this shard
	// and not applied at the new owner (at most maxPerShard).
	Requests []string `json:"requests,omitempty"`
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

// Unfinished reports whether a leader still has to run the failover.
func (s State) Unfinished() bool { return s == Pending || s == Running }

// Lost is one request the lost DC committed after a flipped shard's fence
// that never reached the new owner: a divergence entry.
type Lost struct {
	RequestID    string `json:"request_id"`
	GTID         string `json:"gtid,omitempty"`
	Keyspace     string `json:"keyspace"`
	Shard        int32  `json:"shard"`
	Owner        string `json:"owner"`
	DivergenceID string `json:"divergence_id"`
}

// Exact is the loss counted when the lost DC returned.
type Exact struct {
	ComputedAt time.Time `json:"computed_at"`
	// Requests are at most maxListed; RequestsTotal counts all.
	Requests      []Lost `json:"requests,omitempty"`
	RequestsTotal int    `json:"requests_total"`
}

// Record is one city failover, at /operations/<id>.
type Record struct {
	ID string `json:"id"`
	// Kind is always KindCityFailover.
	Kind string `json:"kind"`
	DC   string `json:"dc"`
	// Trigger is "automatic" or "operator:<actor>".
	Trigger    string `json:"trigger"`
	AcceptLoss bool   `json:"accept_loss,omitempty"`
	State      State  `json:"state"`
	// Verdict is the liveness code and reason that declared the DC lost.
	Verdict        string    `json:"verdict,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	Witnesses      []string  `json:"witnesses,omitempty"`
	LeaseGoneSince time.Time `json:"lease_gone_since,omitzero"`
	// LastSeen is when the DC was last seen alive (its lease held, or a
	// peer seeing it work).
	LastSeen time.Time `json:"last_seen,omitzero"`
	// RequestedBy is "coordinator:<id>" for an automatic failover, the
	// API token name for an operator's.
	RequestedBy string    `json:"requested_by"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// Leader is the coordinator that runs (or ran) it.
	Leader string `json:"leader,omitempty"`
	// FlippedAt is when the last flip transaction committed; FlipTook is
	// StartedAt → FlippedAt.
	FlippedAt time.Time      `json:"flipped_at,omitzero"`
	FlipTook  state.Duration `json:"flip_took,omitempty"`
	// Held is why the failover (or some shards) was held.
	Held     string      `json:"held,omitempty"`
	Error    string      `json:"error,omitempty"`
	Shards   []ShardFlip `json:"shards"`
	Estimate Estimate    `json:"estimate"`
	// Return is set once the DC is back; Exact once its loss was counted.
	Return *Return `json:"return,omitempty"`
	Exact  *Exact  `json:"exact,omitempty"`
	// MapRevision is the etcd revision of the last flip.
	MapRevision int64 `json:"map_revision,omitempty"`

	// Revision is the etcd mod revision the record was read at. Not stored.
	Revision int64 `json:"-"`
}

// lossEnd is the end of the loss window: the later of the lease's loss
// and the last sight of the DC alive; the start of the run when neither
// is known.
func (r Record) lossEnd() time.Time {
	end := r.LeaseGoneSince
	if r.LastSeen.After(end) {
		end = r.LastSeen
	}
	if end.IsZero() {
		end = r.StartedAt
	}
	return end
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
func Key(st *state.Store, id string) string { return st.Key("operations", id) }

// NewID returns a new failover id, sortable by creation time.
func NewID(dc string, t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return KindCityFailover + "-" + t.UTC().Format("20060102T150405.000Z") + "-" + dc + "-" + hex.EncodeToString(b[:])
}

// ErrNotFound means no city failover has the id.
var ErrNotFound = errors.New("cityfail: no such city failover")

// Get reads one record.
func Get(ctx context.Context, st *state.Store, id string) (Record, error) {
	r, rev, err := state.Get[Record](ctx, st, Key(st, id))
	switch {
	case errors.Is(err, state.ErrNotFound), err == nil && r.Kind != KindCityFailover:
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return Record{}, err
	}
	r.Revision = rev
	return r, nil
}

// List returns every city failover, oldest first (the other operations
// under /operations are left out).
func List(ctx context.Context, st *state.Store) ([]Record, error) {
	rs, _, err := list(ctx, st)
	return rs, err
}
