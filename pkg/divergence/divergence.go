// Package divergence records the changes on which a DC and the others
// disagree, in etcd at <root>/divergence/<origin>/<request_id>, each once,
// together with its audit event. Two kinds: a change a DC captured for a
// shard after it handed the shard off (KindFenced, see shardmap.Diverged):
// reship refuses to ship it and collectors refuse to apply it; and a change
// its origin shipped that a lossy failover then discarded there
// (KindDiscarded): the other DCs may have applied it, the origin does not
// have it. The coordinator lists them (drctl divergence list) and records
// an operator's resolution (Resolution) through its leader; a reapply is
// carried out by the owner's collector, which finishes it (Finish).
package divergence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
)

// Audit actions: a recorded entry; a reapply the owner's collector
// finished (applied, or found present) or refused (CONFLICT).
const (
	ActionRecorded       = "divergence.recorded"
	ActionReplayed       = "divergence.replayed"
	ActionReplayConflict = "divergence.replay_conflict"
)

// Kinds of an entry.
const (
	// KindFenced: captured after the origin handed the shard off; shipped
	// or applied nowhere. Entries without a kind are of this kind.
	KindFenced = "fenced"
	// KindDiscarded: shipped by the origin, then lost there by a lossy
	// failover (the promoted replica lacked it); other DCs may hold it.
	KindDiscarded = "discarded"
)

// States of an entry. OPEN and CONFLICT wait for an operator; DISCARDED
// and REPLAYED are final; REPLAYING waits for the owner's collector.
const (
	Open      = "OPEN"
	Replayed  = "REPLAYED"
	Discarded = "DISCARDED"
	Replaying = "REPLAYING"
	Conflict  = "CONFLICT"
)

// Resolution actions.
const (
	// ActionDiscard keeps the change out of the owner for good.
	ActionDiscard = "discard"
	// ActionReapply has the owner's collector apply the change, only over
	// rows still as the change found them.
	ActionReapply = "reapply"
)

// Resolution is an operator's decision on an entry, and for a reapply what
// the target's collector made of it.
type Resolution struct {
	Action      string    `json:"action"`
	By          string    `json:"by"`
	Reason      string    `json:"reason"`
	At          time.Time `json:"at"`
	OperationID string    `json:"operation_id"`
	// Target applies a reapply: the shard's owner when it was resolved.
	Target string `json:"target,omitempty"`
	// Detail, FinishedAt and GTID are the target collector's report.
	Detail     string    `json:"detail,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	GTID       string    `json:"gtid,omitempty"`
}

// Resolvable reports whether an operator may resolve an entry in state s.
func Resolvable(s string) bool { return s == Open || s == Conflict || s == "" }

// Entry is one refused change.
type Entry struct {
	Origin    string `json:"origin"`
	RequestID string `json:"request_id"`
	GTID      string `json:"gtid"`
	Keyspace  string `json:"keyspace"`
	Shard     int32  `json:"shard"`
	// Kind is KindFenced (also when empty) or KindDiscarded.
	Kind string `json:"kind,omitempty"`
	// FailoverID is the in-DC failover that discarded a KindDiscarded
	// change, when known.
	FailoverID string `json:"failover_id,omitempty"`
	// Owner owned the shard when the change was refused.
	Owner string `json:"owner"`
	// FenceWatermark and FenceOperation are the origin's fence.
	FenceWatermark string    `json:"fence_watermark,omitempty"`
	FenceOperation string    `json:"fence_operation,omitempty"`
	DetectedBy     string    `json:"detected_by"`
	DetectedAt     time.Time `json:"detected_at"`
	CommitTime     time.Time `json:"commit_time,omitzero"`
	Rows           int       `json:"rows"`
	State          string    `json:"state"`
	// Change is the refused drplane.v1.ChangeEvent, protobuf-encoded.
	Change []byte `json:"change,omitempty"`
	// Resolution is the operator's last decision, once one was made.
	Resolution *Resolution `json:"resolution,omitempty"`
}

// EffectiveKind is the entry's kind, KindFenced when none is stored.
func (e Entry) EffectiveKind() string {
	if e.Kind == "" {
		return KindFenced
	}
	return e.Kind
}

// ID is the entry's id: "<origin>:<request_id>".
func (e Entry) ID() string { return e.Origin + ":" + e.RequestID }

// Key is the etcd key of an entry.
func Key(st *state.Store, origin, requestID string) string {
	return st.Key("divergence", origin, strings.ReplaceAll(requestID, "/", "_"))
}

// Record stores e (state OPEN) with its audit event in one transaction,
// unless an entry of the same origin and request exists: a change refused
// again (a redelivery, the other side refusing it too) is recorded once.
// created reports whether this call stored it.
func Record(ctx context.Context, st *state.Store, e Entry) (created bool, err error) {
	if e.State == "" {
		e.State = Open
	}
	key := Key(st, e.Origin, e.RequestID)
	ev := audit.Event{
		ID:     audit.NewID(e.DetectedAt, e.DetectedBy, uint64(e.DetectedAt.UnixNano())), //nolint:gosec // a time stamp, positive
		Time:   e.DetectedAt,
		Actor:  e.DetectedBy,
		Action: ActionRecorded,
		Target: e.Keyspace + "/" + strconv.Itoa(int(e.Shard)),
		Params: map[string]string{
			"origin_dc": e.Origin, "request_id": e.RequestID, "gtid": e.GTID, "owner_dc": e.Owner,
			"fence_watermark": e.FenceWatermark, "fence_operation": e.FenceOperation,
			"kind": e.EffectiveKind(), "failover_id": e.FailoverID,
		},
		Outcome: audit.OutcomeOK,
	}
	auditOp, err := audit.NewOutbox(st).PutOp(ev)
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("divergence: encode %s: %w", e.ID(), err)
	}
	resp, err := st.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data)), auditOp).Commit()
	if err != nil {
		return false, fmt.Errorf("divergence: record %s: %w", e.ID(), err)
	}
	return resp.Succeeded, nil
}

// Finish stores the outcome of a reapply on e (read at revision rev: state
// REPLAYED or CONFLICT, the resolution's Detail, FinishedAt and GTID set)
// with its audit event by actor, in one transaction, unless the entry
// changed since. ok reports whether it was stored.
func Finish(ctx context.Context, st *state.Store, e Entry, rev int64, actor string) (ok bool, err error) {
	r := e.Resolution
	if r == nil || (e.State != Replayed && e.State != Conflict) {
		return false, fmt.Errorf("divergence: finish %s: state %s without a resolution to finish", e.ID(), e.State)
	}
	action, outcome := ActionReplayed, audit.OutcomeOK
	if e.State == Conflict {
		action, outcome = ActionReplayConflict, audit.OutcomeFailed
	}
	ev := audit.Event{
		ID:     audit.NewID(r.FinishedAt, actor, uint64(r.FinishedAt.UnixNano())), //nolint:gosec // a time stamp, positive
		Time:   r.FinishedAt,
		Actor:  actor,
		Action: action,
		Target: e.ID(),
		Params: map[string]string{
			"keyspace": e.Keyspace, "shard": strconv.Itoa(int(e.Shard)), "target_dc": r.Target, "detail": r.Detail,
			"gtid": r.GTID, "operation_id": r.OperationID, "resolved_by": r.By,
		},
		Outcome: outcome,
	}
	if outcome == audit.OutcomeFailed {
		ev.Error = r.Detail
	}
	auditOp, err := audit.NewOutbox(st).PutOp(ev)
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("divergence: encode %s: %w", e.ID(), err)
	}
	key := Key(st, e.Origin, e.RequestID)
	resp, err := st.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(data)), auditOp).Commit()
	if err != nil {
		return false, fmt.Errorf("divergence: finish %s: %w", e.ID(), err)
	}
	return resp.Succeeded, nil
}

// List returns the entries of origin (every origin when empty).
func List(ctx context.Context, st *state.Store, origin string) ([]Entry, error) {
	p := st.Prefix("divergence")
	if origin != "" {
		p = st.Prefix("divergence", origin)
	}
	es, _, err := state.List[Entry](ctx, st, p)
	return es, err
}

// ErrBadID means an id is not "<origin>:<request_id>".
var ErrBadID = errors.New("divergence: id is not <origin>:<request_id>")

// ParseID splits an id into its origin and request id; errors wrap
// ErrBadID.
func ParseID(id string) (origin, requestID string, err error) {
	origin, requestID, ok := strings.Cut(id, ":")
	if !ok || origin == "" || requestID == "" {
		return "", "", fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return origin, requestID, nil
}

// KeyOf returns the etcd key of the entry with id ("<origin>:<request_id>");
// errors wrap ErrBadID.
func KeyOf(st *state.Store, id string) (string, error) {
	origin, req, err := ParseID(id)
	if err != nil {
		return "", err
	}
	return Key(st, origin, req), nil
}

// Get returns one entry by id ("<origin>:<request_id>"); a malformed id is
// not found.
func Get(ctx context.Context, st *state.Store, id string) (Entry, error) {
	e, _, err := GetRev(ctx, st, id)
	return e, err
}

// GetRev returns one entry by id with its etcd mod revision.
func GetRev(ctx context.Context, st *state.Store, id string) (Entry, int64, error) {
	key, err := KeyOf(st, id)
	if err != nil {
		return Entry{}, 0, fmt.Errorf("%w: %w", state.ErrNotFound, err)
	}
	return state.Get[Entry](ctx, st, key)
}
