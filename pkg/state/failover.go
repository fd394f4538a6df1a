package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// FailoverKind tells an automatic failover from an operator's switchover.
type FailoverKind string

// Failover kinds.
const (
	KindFailover   FailoverKind = "FAILOVER"
	KindSwitchover FailoverKind = "SWITCHOVER"
)

// Outcome is where a failover or switchover ended (or is).
type Outcome string

// Outcomes.
const (
	OutcomeRunning   Outcome = "RUNNING"
	OutcomeSucceeded Outcome = "SUCCEEDED"
	OutcomeFailed    Outcome = "FAILED"
	// OutcomeAborted: a pre-failover hook, a kill switch or a precondition
	// stopped it before any instance changed.
	OutcomeAborted Outcome = "ABORTED"
)

// Step is one timed step of a failover or switchover.
type Step struct {
	Name  string    `json:"name"`
	At    time.Time `json:"at"`
	Took  Duration  `json:"took"`
	Error string    `json:"error,omitempty"`
}

// Duration is a time.Duration that encodes as a Go duration string.
type Duration time.Duration

// MarshalText renders the duration as "1.5s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("state: duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// FailoverRecord is the durable account of one failover or switchover of
// one (dc, cluster). The agent writes it when it starts and updates it as
// the steps complete, so a record in RUNNING whose agent died tells the next
// agent what was under way.
type FailoverRecord struct {
	ID      string       `json:"id"`
	DC      string       `json:"dc"`
	Cluster string       `json:"cluster"`
	Kind    FailoverKind `json:"kind"`
	// Trigger is "analysis" for automatic failovers, "operator:<actor>" for
	// switchovers.
	Trigger string `json:"trigger"`
	// Analysis is the analysis code that triggered an automatic failover.
	Analysis  string  `json:"analysis,omitempty"`
	OldMaster string  `json:"old_master"`
	NewMaster string  `json:"new_master,omitempty"`
	Outcome   Outcome `json:"outcome"`
	Error     string  `json:"error,omitempty"`
	Steps     []Step  `json:"steps,omitempty"`
	// DetectedAt is when the failure was first seen (switchover: requested).
	DetectedAt time.Time `json:"detected_at"`
	StartedAt  time.Time `json:"started_at"`
	// WritableAt is when the new master accepted writes.
	WritableAt time.Time `json:"writable_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// RTO is DetectedAt → WritableAt.
	RTO Duration `json:"rto,omitempty"`
	// RPOTransactions counts the transactions the old master had that the
	// new one lacks, by GTID; -1 when the old master's position is unknown.
	RPOTransactions int64 `json:"rpo_transactions"`
	// LostGTIDs names them (old master's position beyond the new one's).
	LostGTIDs string `json:"lost_gtids,omitempty"`
	// BlockWindow is, for a switchover, how long no instance accepted writes.
	BlockWindow Duration `json:"block_window,omitempty"`
	// Rewind is set by reship when the new master lacked transactions it
	// had already shipped from the old one (a lossy failover): the other
	// DCs applied them, this DC lost them.
	Rewind *Rewind `json:"rewind,omitempty"`
	// Agent is the agent id that ran it; FencingRevision its election token.
	Agent           string `json:"agent"`
	FencingRevision int64  `json:"fencing_revision"`
}

// Rewind is reship's account of a lossy failover: its checkpoint was past
// the new master's binlog, so it moved back to the new master's position.
type Rewind struct {
	// From is the checkpoint the new master's binlog does not hold, To the
	// position reship resumed from.
	From string `json:"from"`
	To   string `json:"to"`
	// Transactions counts the lost transactions by GTID sequence numbers.
	Transactions int64 `json:"transactions"`
	// LostGTIDs and LostRequests name the shipped transactions and their
	// requests (one per transaction and shard) that the new master lacks,
	// found in the DC's outbound stream; LostRequests keeps at most the
	// first 10,000, LostRequestsTotal counts them all. Complete is false
	// when the stream was not read back as far as the fork.
	LostGTIDs         []string  `json:"lost_gtids,omitempty"`
	LostRequests      []string  `json:"lost_requests,omitempty"`
	LostRequestsTotal int       `json:"lost_requests_total"`
	Complete          bool      `json:"complete"`
	By                string    `json:"by"`
	At                time.Time `json:"at"`
}

// Done reports whether the record reached a final outcome.
func (r FailoverRecord) Done() bool { return r.Outcome != OutcomeRunning && r.Outcome != "" }

// NewRecordID returns a sortable id for a record started at t.
func NewRecordID(t time.Time, dc, cluster string) string {
	return t.UTC().Format("20060102T150405.000000000Z") + "-" + dc + "-" + cluster
}

// FailoverKey is the etcd key of a failover record.
func (s *Store) FailoverKey(dc, cluster, id string) string {
	return s.Key("failovers", dc, cluster, id)
}

// PutFailover writes a failover record, guarded by fence when non-nil.
func (s *Store) PutFailover(ctx context.Context, rec FailoverRecord, fence *Fence) error {
	_, err := Put(ctx, s, s.FailoverKey(rec.DC, rec.Cluster, rec.ID), rec, PutOptions{PrevRev: -1, Fence: fence})
	return err
}

// Failovers lists failover records under dc and cluster (either may be
// empty for all), oldest first.
func (s *Store) Failovers(ctx context.Context, dc, cluster string) ([]FailoverRecord, error) {
	p := s.Prefix("failovers")
	switch {
	case dc != "" && cluster != "":
		p = s.Prefix("failovers", dc, cluster)
	case dc != "":
		p = s.Prefix("failovers", dc)
	}
	recs, _, err := List[FailoverRecord](ctx, s, p)
	return recs, err
}

// KillSwitch stops automatic failovers in its scope while it is set.
// Switchovers requested by an operator are not stopped by it.
type KillSwitch struct {
	// Scope is "global", "dc/<dc>" or "cluster/<dc>/<cluster>".
	Scope  string    `json:"scope"`
	Reason string    `json:"reason"`
	SetBy  string    `json:"set_by"`
	SetAt  time.Time `json:"set_at"`
}

// ErrBadScope means a kill-switch scope is malformed.
var ErrBadScope = errors.New("state: bad kill-switch scope")

// KillSwitchScope builds a scope: global when dc is empty, the DC when
// cluster is empty, else the cluster.
func KillSwitchScope(dc, cluster string) string {
	switch {
	case dc == "":
		return "global"
	case cluster == "":
		return "dc/" + dc
	}
	return "cluster/" + dc + "/" + cluster
}

// KillSwitchKey is the etcd key of the kill switch of scope.
func (s *Store) KillSwitchKey(scope string) string { return s.Key("killswitches", scope) }

// PutKillSwitch sets a kill switch.
func (s *Store) PutKillSwitch(ctx context.Context, ks KillSwitch) error {
	_, err := Put(ctx, s, s.KillSwitchKey(ks.Scope), ks, PutOptions{PrevRev: -1})
	return err
}

// DeleteKillSwitch clears a kill switch; clearing an absent one is not an error.
func (s *Store) DeleteKillSwitch(ctx context.Context, scope string) error {
	if _, err := s.cli.Delete(ctx, s.KillSwitchKey(scope)); err != nil {
		return fmt.Errorf("state: clear kill switch %s: %w", scope, err)
	}
	return nil
}

// KillSwitches lists every kill switch that is set.
func (s *Store) KillSwitches(ctx context.Context) ([]KillSwitch, error) {
	recs, _, err := List[KillSwitch](ctx, s, s.Prefix("killswitches"))
	return recs, err
}

// Blocked returns the kill switch that stops automatic failover of
// (dc, cluster), if any, from a list returned by KillSwitches.
func Blocked(switches []KillSwitch, dc, cluster string) (KillSwitch, bool) {
	for _, scope := range []string{KillSwitchScope("", ""), KillSwitchScope(dc, ""), KillSwitchScope(dc, cluster)} {
		for _, ks := range switches {
			if ks.Scope == scope {
				return ks, true
			}
		}
	}
	return KillSwitch{}, false
}

// SwitchoverState is where a requested switchover is.
type SwitchoverState string

// Switchover states.
const (
	SwitchoverPending SwitchoverState = "PENDING"
	SwitchoverRunning SwitchoverState = "RUNNING"
	SwitchoverDone    SwitchoverState = "DONE"
	SwitchoverFailed  SwitchoverState = "FAILED"
)

// SwitchoverIntent is an operator's request for a graceful switchover of
// one (dc, cluster). The coordinator creates it (at most one per cluster);
// the DC's active agent carries it out and sets State, RecordID and Error.
type SwitchoverIntent struct {
	ID      string `json:"id"`
	DC      string `json:"dc"`
	Cluster string `json:"cluster"`
	// To is the instance to promote; empty lets the agent pick.
	To          string          `json:"to,omitempty"`
	RequestedBy string          `json:"requested_by"`
	RequestedAt time.Time       `json:"requested_at"`
	State       SwitchoverState `json:"state"`
	RecordID    string          `json:"record_id,omitempty"`
	Error       string          `json:"error,omitempty"`
}

// SwitchoverKey is the etcd key of the intent for (dc, cluster).
func (s *Store) SwitchoverKey(dc, cluster string) string {
	return s.Key("intents", "switchover", dc, cluster)
}

// CreateSwitchover stores a new intent; it fails with ErrConflict while an
// unfinished intent for the same cluster exists.
func (s *Store) CreateSwitchover(ctx context.Context, in SwitchoverIntent) (int64, error) {
	key := s.SwitchoverKey(in.DC, in.Cluster)
	cur, rev, err := Get[SwitchoverIntent](ctx, s, key)
	switch {
	case errors.Is(err, ErrNotFound):
		rev = 0
	case err != nil:
		return 0, err
	case cur.State == SwitchoverPending || cur.State == SwitchoverRunning:
		return 0, fmt.Errorf("%w: switchover %s of %s/%s is %s", ErrConflict, cur.ID, in.DC, in.Cluster, cur.State)
	}
	return Put(ctx, s, key, in, PutOptions{PrevRev: rev})
}

// Switchover returns the intent for (dc, cluster) and its revision.
func (s *Store) Switchover(ctx context.Context, dc, cluster string) (SwitchoverIntent, int64, error) {
	return Get[SwitchoverIntent](ctx, s, s.SwitchoverKey(dc, cluster))
}

// UpdateSwitchover replaces the intent if it is still at prevRev and the
// fence (when non-nil) holds.
func (s *Store) UpdateSwitchover(ctx context.Context, in SwitchoverIntent, prevRev int64, fence *Fence) (int64, error) {
	return Put(ctx, s, s.SwitchoverKey(in.DC, in.Cluster), in, PutOptions{PrevRev: prevRev, Fence: fence})
}

// WatchSwitchovers streams intent changes of one DC from fromRev.
func (s *Store) WatchSwitchovers(ctx context.Context, dc string, fromRev int64) <-chan Event[SwitchoverIntent] {
	return Watch[SwitchoverIntent](ctx, s, s.Prefix("intents", "switchover", dc), true, fromRev)
}
