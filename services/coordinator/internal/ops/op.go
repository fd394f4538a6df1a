package ops

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Kind is what an operation changes.
type Kind string

// Operation kinds; see the package documentation for their parameters.
const (
	KindMoveShard       Kind = "move_shard"
	KindSetShardState   Kind = "set_shard_state"
	KindSetDCState      Kind = "set_dc_state"
	KindSetKillSwitch   Kind = "set_killswitch"
	KindClearKillSwitch Kind = "clear_killswitch"
	// KindResolveDivergence records an operator's decision on a divergence
	// entry (see divergence.go).
	KindResolveDivergence Kind = "resolve_divergence"
)

// Audit actions of applied and failed operations, by kind.
const (
	ActionShardMove         = "shard.move"
	ActionShardSetState     = "shard.set_state"
	ActionDCSetState        = "dc.set_state"
	ActionKillSwitchSet     = "killswitch.set"
	ActionKillSwitchClear   = "killswitch.clear"
	ActionDivergenceResolve = "divergence.resolve"
)

// State is where an operation is.
type State string

// Operation states.
const (
	// Pending: queued, not applied yet.
	Pending State = "PENDING"
	// Done: applied by the leader.
	Done State = "DONE"
	// Failed: rejected by the leader; nothing changed.
	Failed State = "FAILED"
)

// MetaOperationID is the ErrorInfo metadata key naming the operation an API
// error is about.
const MetaOperationID = "operation_id"

// Errors.
var (
	// ErrNotQueued means the operation could not be written to the queue;
	// nothing will happen.
	ErrNotQueued = errors.New("ops: operation not queued")
	// ErrUnknownKind means an operation record names a kind this version
	// does not know.
	ErrUnknownKind = errors.New("ops: unknown operation kind")
)

// Params are an operation's parameters; which ones matter depends on the
// kind (see the package documentation).
type Params struct {
	Keyspace   string           `json:"keyspace,omitempty"`
	Shard      int              `json:"shard"`
	Owner      string           `json:"owner,omitempty"`
	Backup     string           `json:"backup,omitempty"`
	ShardState shardmap.State   `json:"shard_state,omitempty"`
	DC         string           `json:"dc,omitempty"`
	DCState    topology.DCState `json:"dc_state,omitempty"`
	Cluster    string           `json:"cluster,omitempty"`
	// KillSwitch is the switch set_killswitch stores.
	KillSwitch *state.KillSwitch `json:"kill_switch,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	// Force marks a move_shard asked for as the raw flip (audited).
	Force bool `json:"force,omitempty"`
	// DivergenceID and Action are resolve_divergence's entry and decision.
	DivergenceID string `json:"divergence_id,omitempty"`
	Action       string `json:"action,omitempty"`
}

// Result is what the leader reports back besides the outcome.
type Result struct {
	// Changed is false when the object already was as asked and nothing
	// was written but the operation record.
	Changed bool `json:"changed"`
	// Backup is the backup DC a move_shard resolved.
	Backup string `json:"backup,omitempty"`
	// Cleared reports whether clear_killswitch found a switch set.
	Cleared bool `json:"cleared,omitempty"`
	// KillSwitch is the switch set or removed.
	KillSwitch *state.KillSwitch `json:"kill_switch,omitempty"`
	// Divergence is the entry as resolve_divergence left it.
	Divergence *divergence.Entry `json:"divergence,omitempty"`
}

// Op is one operation record.
type Op struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Params Params `json:"params"`
	// RequestedBy is the API token name of the caller.
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	State       State     `json:"state"`

	// Set when the operation finished.

	// Leader is the id of the coordinator that applied or failed it, under
	// the fencing revision Fence.
	Leader     string    `json:"leader,omitempty"`
	Fence      int64     `json:"fence,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Code is the API error code (its reason, e.g. "INVALID_ARGUMENT") of
	// a FAILED operation, Field the offending request field, Error the
	// message.
	Code   string  `json:"code,omitempty"`
	Field  string  `json:"field,omitempty"`
	Error  string  `json:"error,omitempty"`
	Result *Result `json:"result,omitempty"`

	// Revision is the etcd mod revision the record was read at; for a
	// finished operation, the revision of the transaction that finished it
	// (and applied its change). Not stored.
	Revision int64 `json:"-"`
}

// Finished reports whether the operation is DONE or FAILED.
func (o Op) Finished() bool { return o.State == Done || o.State == Failed }

// Err returns the API error of a FAILED operation (nil otherwise), with
// the operation id in its metadata.
func (o Op) Err() error {
	if o.State != Failed {
		return nil
	}
	code, ok := apierr.CodeFromReason(o.Code)
	if !ok {
		code = drplanev1.ErrorCode_ERROR_CODE_INTERNAL
	}
	e := &apierr.Error{Code: code, Message: o.Error, Field: o.Field}
	return e.WithMetadata(MetaOperationID, o.ID)
}

// Action returns the audit action of the operation's kind.
func (o Op) Action() string {
	switch o.Kind {
	case KindMoveShard:
		return ActionShardMove
	case KindSetShardState:
		return ActionShardSetState
	case KindSetDCState:
		return ActionDCSetState
	case KindSetKillSwitch:
		return ActionKillSwitchSet
	case KindClearKillSwitch:
		return ActionKillSwitchClear
	case KindResolveDivergence:
		return ActionDivergenceResolve
	}
	return "op." + string(o.Kind)
}

// Target returns what the operation acts on, as audited: "<keyspace>/<shard>",
// a DC name or a kill-switch scope.
func (o Op) Target() string {
	p := o.Params
	switch o.Kind {
	case KindMoveShard, KindSetShardState:
		return p.Keyspace + "/" + strconv.Itoa(p.Shard)
	case KindSetDCState:
		return p.DC
	case KindSetKillSwitch:
		if p.KillSwitch != nil {
			return p.KillSwitch.Scope
		}
	case KindClearKillSwitch:
		return state.KillSwitchScope(p.DC, p.Cluster)
	case KindResolveDivergence:
		return p.DivergenceID
	}
	return ""
}

// AuditParams returns the operation's parameters as audited.
func (o Op) AuditParams() map[string]string {
	p := o.Params
	m := map[string]string{MetaOperationID: o.ID}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	switch o.Kind {
	case KindMoveShard:
		set("owner", p.Owner)
		set("backup", p.Backup)
		if p.Force {
			m["force"] = "true"
		}
	case KindSetShardState:
		set("state", string(p.ShardState))
	case KindSetDCState:
		set("state", string(p.DCState))
	case KindSetKillSwitch:
		if p.KillSwitch != nil {
			set("reason", p.KillSwitch.Reason)
		}
	case KindClearKillSwitch:
		if o.Result != nil {
			m["cleared"] = strconv.FormatBool(o.Result.Cleared)
		}
	case KindResolveDivergence:
		set("action", p.Action)
		if r := o.Result; r != nil && r.Divergence != nil {
			e := r.Divergence
			set("state", e.State)
			set("kind", e.EffectiveKind())
			set("shard", e.Keyspace+"/"+strconv.Itoa(int(e.Shard)))
			if e.Resolution != nil {
				set("target_dc", e.Resolution.Target)
			}
		}
	}
	set("reason", p.Reason)
	if o.Kind == KindMoveShard && o.Result != nil {
		set("backup", o.Result.Backup)
	}
	return m
}

// newID returns a new operation id: the request time (sortable) and a
// random suffix, unique across coordinators.
func newID(t time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "op-" + t.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}
