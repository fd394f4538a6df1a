// Package drill is the DR drill of the lab: steady writes through the SDK
// (a writer pool per DC, every write an id with its acknowledgement time) to
// every shard of the sample keyspace while it runs DR events one after the
// other — kill -9 of a master, a graceful switchover, a paused master, a
// DC's evacuation and restore, the loss of a whole DC (city failover) and
// its return —
// and checks from outside, by reading MySQL directly, that no acknowledged
// write was lost, that no two instances of a cluster were writable at once,
// that no deposed master acknowledged a write, that every DC converges to
// the same data, that nothing was applied twice, and that every shard has
// exactly one owner. The report gives each event's RTO, write-block window
// and RPO as the writers saw them, next to what the system recorded.
//
// The checks are pure functions over the records (writes, read_only
// samples, table digests), so they are tested with fabricated records that
// break each invariant.
package drill

import (
	"time"
)

// Write is one write attempt of the drill: one new row of the sample
// keyspace, through the SDK, in one transaction with its shard's counter.
type Write struct {
	ID    int64 `json:"id"`
	Shard int   `json:"shard"`
	// DC is the DC whose writer pool made the attempt.
	DC string `json:"dc"`
	// Instance is the MySQL instance the SDK sent it to (by address).
	Instance string    `json:"instance,omitempty"`
	Start    time.Time `json:"start"`
	// Ack is when the commit returned without error; zero when it failed.
	Ack time.Time `json:"ack,omitzero"`
	// Kind classifies a failure (see errorKind); empty when acknowledged.
	Kind string `json:"kind,omitempty"`
	// GTID is the transaction's GTID (@@last_gtid after the commit), for
	// acknowledged writes.
	GTID string `json:"gtid,omitempty"`
}

// Acked reports whether the write was acknowledged.
func (w Write) Acked() bool { return !w.Ack.IsZero() }

// RequestID is the system's name of the write (reship's and the ledger's
// request id of one transaction in one shard: "<gtid>/<shard>"), or "" when
// its GTID is not known.
func (w Write) RequestID() string {
	if w.GTID == "" {
		return ""
	}
	return w.GTID + "/" + itoa(w.Shard)
}

// Sample is one round of read_only reads of a cluster's instances.
type Sample struct {
	// From is when the sample's reads began and At when the last one
	// ended: each instance was read somewhere in between.
	From, At time.Time
	// Writable are the instances that answered read_only=0; instances that
	// did not answer (killed, paused) are in neither list.
	Writable []string
	ReadOnly []string
}

// ClusterID names one MySQL cluster: its DC and name.
type ClusterID struct {
	DC, Cluster string
}

func (c ClusterID) String() string { return c.DC + "/" + c.Cluster }

// Digest summarises one instance's copy of the sample table.
type Digest struct {
	Instance string `json:"instance"`
	DC       string `json:"dc"`
	Rows     int64  `json:"rows"`
	Sum      string `json:"sum"`
	Err      string `json:"error,omitempty"`
}

// Counter is one shard's counter row as one DC holds it, with the number of
// drill rows of that shard the DC holds: every drill write inserts one row
// and increments the counter in the same transaction, so the two are equal
// unless a transaction was applied twice (an old after-image applied again
// over newer ones) or in part.
type Counter struct {
	DC    string `json:"dc"`
	Shard int    `json:"shard"`
	Value int64  `json:"value"`
	Rows  int64  `json:"rows"`
}

// Outcome of a check.
const (
	Pass = "PASS"
	Fail = "FAIL"
)

// CheckResult is one check, evaluated once.
type CheckResult struct {
	Name string `json:"name"`
	// After names the step it was evaluated after ("kill#1"), or "run" for
	// checks over the whole run.
	After   string   `json:"after"`
	Outcome string   `json:"outcome"`
	Detail  string   `json:"detail"`
	Samples int      `json:"samples,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

// Names of the checks.
const (
	NameLost        = "no acknowledged write lost"
	NameTwoWritable = "never two writable instances of a cluster"
	NameDeposed     = "no write acknowledged by a deposed master"
	NameConverge    = "all DCs converge to equal checksums"
	NameDuplicate   = "no duplicate or partial applies"
	NameOwner       = "every shard has exactly one owner"
	NameRecovered   = "writes recovered after the event"
	NameRedundancy  = "full redundancy restored"
)

// result builds a CheckResult from a list of violations (at most a few
// listed).
func result(name, after string, violations []string, okDetail string) CheckResult {
	r := CheckResult{Name: name, After: after, Outcome: Pass, Detail: okDetail}
	if len(violations) > 0 {
		r.Outcome = Fail
		r.Detail = violations[0]
		if len(violations) > 1 {
			r.Detail += " (and " + itoa(len(violations)-1) + " more)"
		}
		if len(violations) > 10 {
			violations = violations[:10]
		}
		r.Errors = violations
	}
	return r
}
