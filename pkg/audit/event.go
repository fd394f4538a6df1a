// Package audit defines drplane's audit events — who did what to which
// target, with what outcome — and the etcd outbox through which processes
// that have no audit store of their own (the HA agents) hand events to the
// coordinator, which indexes them into the audit store.
package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// Outcome values of an Event.
const (
	OutcomeOK     = "OK"
	OutcomeFailed = "FAILED"
	OutcomeDenied = "DENIED"
)

// Event is one audited action.
type Event struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Actor is who acted: "token:<name>" for API callers, "haagent:<id>" for
	// automatic actions.
	Actor string `json:"actor"`
	// Action is a dotted verb such as "failover.automatic" or "killswitch.set".
	Action string `json:"action"`
	// Target names what was acted on, such as "dc-a1/main".
	Target string `json:"target"`
	// Params are the call's parameters with secrets removed.
	Params  map[string]string `json:"params,omitempty"`
	Outcome string            `json:"outcome"`
	Error   string            `json:"error,omitempty"`
	// RTOMillis and RPOTransactions are set for failovers; -1 when unknown.
	RTOMillis       int64 `json:"rto_ms,omitempty"`
	RPOTransactions int64 `json:"rpo_transactions,omitempty"`
}

// ErrInvalid means an event lacks a required field.
var ErrInvalid = errors.New("audit: invalid event")

// Validate checks the required fields.
func (e Event) Validate() error {
	switch {
	case e.ID == "":
		return fmt.Errorf("%w: id is empty", ErrInvalid)
	case e.Time.IsZero():
		return fmt.Errorf("%w: time is zero", ErrInvalid)
	case e.Actor == "", e.Action == "":
		return fmt.Errorf("%w: actor and action are required", ErrInvalid)
	}
	return nil
}

// idTimeLayout is the time stamp at the start of every event id: fixed
// width, so ids (and outbox keys) sort by time.
const idTimeLayout = "20060102T150405.000000000Z"

// NewID returns a time-sortable event id unique within source.
func NewID(t time.Time, source string, seq uint64) string {
	return fmt.Sprintf("%s-%s-%d", t.UTC().Format(idTimeLayout), strings.ReplaceAll(source, "/", "_"), seq)
}

// Outbox is the etcd hand-off of events: writers put them under
// <root>/audit-outbox/, the coordinator indexes and deletes them.
type Outbox struct {
	st *state.Store
}

// NewOutbox returns the outbox in st.
func NewOutbox(st *state.Store) *Outbox { return &Outbox{st: st} }

// Put stores e in the outbox, bounded (Event.Bounded).
func (o *Outbox) Put(ctx context.Context, e Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e = e.Bounded()
	_, err := state.Put(ctx, o.st, o.st.Key("audit-outbox", e.ID), e, state.PutOptions{PrevRev: -1})
	return err
}

// List returns up to limit pending events, oldest first (limit <= 0: all).
func (o *Outbox) List(ctx context.Context, limit int) ([]Event, error) {
	evs, _, err := state.List[Event](ctx, o.st, o.st.Prefix("audit-outbox"))
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(evs) > limit {
		evs = evs[:limit]
	}
	return evs, nil
}

// Delete removes delivered events.
func (o *Outbox) Delete(ctx context.Context, ids ...string) error {
	ops := make([]clientv3.Op, 0, len(ids))
	for _, id := range ids {
		ops = append(ops, clientv3.OpDelete(o.st.Key("audit-outbox", id)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 64)
		if _, err := o.st.Client().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("audit: delete outbox events: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}
