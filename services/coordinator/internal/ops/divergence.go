package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Request fields of ResolveDivergence the errors refer to.
const (
	FieldDivergenceID = "id"
	FieldAction       = "action"
	FieldReason       = "reason"
)

// CheckResolveRequest checks the shape of a resolve_divergence request:
// an id "<origin>:<request_id>", a known action and a reason.
func CheckResolveRequest(p Params) error {
	if p.DivergenceID == "" {
		return apierr.InvalidArgument(FieldDivergenceID, "id is required: the divergence entry's <origin_dc>:<request_id>")
	}
	if _, _, err := divergence.ParseID(p.DivergenceID); err != nil {
		return apierr.InvalidArgument(FieldDivergenceID, fmt.Sprintf("id %q is not <origin_dc>:<request_id>", p.DivergenceID))
	}
	switch p.Action {
	case divergence.ActionDiscard, divergence.ActionReapply:
	default:
		return apierr.InvalidArgument(FieldAction, fmt.Sprintf("unknown action %q: want %q or %q",
			p.Action, divergence.ActionDiscard, divergence.ActionReapply))
	}
	if strings.TrimSpace(p.Reason) == "" {
		return apierr.InvalidArgument(FieldReason, "a reason is required: say why the change is "+pastTense(p.Action))
	}
	return nil
}

func pastTense(action string) string {
	if action == divergence.ActionReapply {
		return "reapplied"
	}
	return "discarded"
}

// Resolve returns entry e as resolving it with p leaves it, or the API
// error that refuses it. m is the shard's keyspace map (a reapply targets
// the shard's current owner, which must be ACTIVE in topo).
func Resolve(e divergence.Entry, m shardmap.Map, topo topology.Topology, p Params, opID, who string, now time.Time) (divergence.Entry, error) {
	if err := CheckResolveRequest(p); err != nil {
		return e, err
	}
	if !divergence.Resolvable(e.State) {
		return e, resolvedError(e)
	}
	r := &divergence.Resolution{Action: p.Action, By: who, Reason: strings.TrimSpace(p.Reason), At: now.UTC(), OperationID: opID}
	out := e
	out.Resolution = r
	if p.Action == divergence.ActionDiscard {
		out.State = divergence.Discarded
		return out, nil
	}
	if len(e.Change) == 0 {
		return e, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			"the refused change was not kept with this entry: there is nothing to reapply; discard it")
	}
	sh, ok := m.Shard(int(e.Shard))
	if !ok {
		return e, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			"shard %s/%d is not in the keyspace's map any more: there is no owner to reapply the change at", e.Keyspace, e.Shard)
	}
	if dc, ok := topo.DC(sh.Owner); !ok || dc.StateOf() != topology.DCActive {
		return e, apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			"the shard's owner %s is not ACTIVE: its collector would not reapply the change; restore it first", sh.Owner)
	}
	out.State = divergence.Replaying
	r.Target = sh.Owner
	return out, nil
}

// resolvedError is the FAILED_PRECONDITION of an entry that is not OPEN or
// CONFLICT.
func resolvedError(e divergence.Entry) error {
	r := e.Resolution
	if r == nil {
		r = &divergence.Resolution{}
	}
	if e.State == divergence.Replaying {
		return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			"divergence %s is being reapplied at %s (asked by %s, operation %s): wait for REPLAYED or CONFLICT",
			e.ID(), r.Target, r.By, r.OperationID)
	}
	return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
		"divergence %s is resolved already: %s by %s at %s (operation %s)", e.ID(), e.State, orUnknown(r.By),
		r.At.UTC().Format(time.RFC3339), orUnknown(r.OperationID))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// planResolve reads the entry (and for a reapply its shard map) and
// computes the resolution, compared on the entry's revision (and the
// map's).
func (q *Queue) planResolve(ctx context.Context, op Op, topo topology.Topology, topoCmp clientv3.Cmp) (change, error) {
	p := op.Params
	if err := CheckResolveRequest(p); err != nil {
		return change{fail: err}, nil
	}
	key, _ := divergence.KeyOf(q.o.Store, p.DivergenceID)
	e, rev, err := state.Get[divergence.Entry](ctx, q.o.Store, key)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return change{fail: notFound(FieldDivergenceID, "divergence entry", p.DivergenceID)}, nil
	case err != nil:
		return change{}, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	var m shardmap.Map
	if p.Action == divergence.ActionReapply && divergence.Resolvable(e.State) && len(e.Change) > 0 {
		m, err = shardmap.Load(ctx, q.o.Store, e.Keyspace)
		switch {
		case errors.Is(err, state.ErrNotFound):
			return change{fail: NoMap(e.Keyspace)}, nil
		case err != nil:
			return change{}, err
		}
		cmps = append(cmps, topoCmp, clientv3.Compare(clientv3.ModRevision(shardmap.Key(q.o.Store, e.Keyspace)), "=", m.Revision))
	}
	next, err := Resolve(e, m, topo, p, op.ID, op.RequestedBy, q.o.Now())
	if err != nil {
		return change{fail: err}, nil
	}
	w, err := putJSON(key, next)
	if err != nil {
		return change{}, err
	}
	shown := next
	shown.Change = nil
	return change{cmps: cmps, writes: []clientv3.Op{w}, result: &Result{Changed: true, Divergence: &shown}}, nil
}
