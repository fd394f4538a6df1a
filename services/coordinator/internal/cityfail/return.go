package cityfail

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// ActionExact is the audit action of the exact loss counted on a DC's
// return.
const ActionExact = "city_failover.exact"

// Defaults of the return watch.
const (
	// DefaultReturnEvery is how often the leader looks for returned DCs.
	DefaultReturnEvery = time.Second
	// DefaultReturnSettle is how long after the DC's reship caught up with
	// its masters the loss is counted: the NATS backlog the DC left behind
	// reaches the new owners' collectors, which refuse it as divergence, in
	// that time.
	DefaultReturnSettle = 5 * time.Second
)

// Return is what the leader knows of a failed-over DC's return.
type Return struct {
	// At is when the leader first saw the DC's lease again; CaughtUpAt
	// when its reship had read its masters' binlogs to their end.
	At         time.Time `json:"at"`
	CaughtUpAt time.Time `json:"caught_up_at,omitzero"`
}

// checkpoint is the part of reship's checkpoint the return reads.
type checkpoint struct {
	Position string `json:"position"`
}

// Returns watches, while this coordinator leads, for the DCs of finished
// failovers coming back, and counts what each lost exactly: once the DC's
// reship has read its masters' binlogs to their end (its checkpoint covers
// the gtid_binlog_pos its HA agent observed after the return) and the
// settle time passed, every change it had captured for a flipped shard
// after the shard's fence was refused as divergence (by that reship, or by
// a new owner's collector for what was left in the DC's NATS); those
// entries, fenced by this failover, are the exact loss. It is recorded on
// the failover and audited, and counted again when more entries appear.
func (r *Runner) Returns(ctx context.Context, fence state.Fence) error {
	for retry.Sleep(ctx, r.o.ReturnEvery) {
		if err := r.returnsOnce(ctx, fence); err != nil && ctx.Err() == nil {
			r.o.Logger.Debug().Err(err).Msg("returns not looked at")
		}
	}
	return nil
}

func (r *Runner) returnsOnce(ctx context.Context, fence state.Fence) error {
	st := r.f.o.Store
	all, _, err := list(ctx, st)
	if err != nil {
		return err
	}
	leases, _, err := st.DCLeases(ctx)
	if err != nil {
		return err
	}
	now := r.f.o.Now().UTC()
	for _, rec := range all {
		if rec.State.Unfinished() || rec.State == Failed || rec.Flipped() == 0 {
			continue
		}
		if _, back := leases[rec.DC]; !back {
			continue
		}
		changed := false
		if rec.Return == nil {
			rec.Return, changed = &Return{At: now}, true
			r.o.Logger.Warn().Str("dc", rec.DC).Str("failover", rec.ID).Msg("failed-over DC is back: counting its loss once its reship caught up")
		}
		if rec.Return.CaughtUpAt.IsZero() {
			up, err := caughtUp(ctx, st, rec.DC, rec.Return.At)
			if err != nil {
				return err
			}
			if up {
				rec.Return.CaughtUpAt, changed = now, true
			}
		}
		if !rec.Return.CaughtUpAt.IsZero() && now.Sub(rec.Return.CaughtUpAt) >= r.o.ReturnSettle {
			exact, err := exactLoss(ctx, st, rec, now)
			if err != nil {
				return err
			}
			if rec.Exact == nil || exact.RequestsTotal != rec.Exact.RequestsTotal {
				rec.Exact = &exact
				if err := r.writeExact(ctx, fence, rec); err != nil {
					return err
				}
				continue
			}
		}
		if changed {
			if _, err := state.Put(ctx, st, Key(st, rec.ID), rec, state.PutOptions{PrevRev: rec.Revision, Fence: &fence}); err != nil {
				return err
			}
		}
	}
	return nil
}

// caughtUp reports whether dc's reship has read, in every cluster of dc,
// its master's binlog to the position the DC's HA agent observed after
// since.
func caughtUp(ctx context.Context, st *state.Store, dc string, since time.Time) (bool, error) {
	masters, err := st.Masters(ctx, dc)
	if err != nil || len(masters) == 0 {
		return false, err
	}
	obs, err := st.InstanceStatuses(ctx, dc)
	if err != nil {
		return false, err
	}
	for _, m := range masters {
		var pos string
		for _, o := range obs {
			if o.Cluster == m.Cluster && o.Name == m.Instance && o.Reachable && o.ObservedAt.After(since) {
				pos = o.GTIDBinlogPos
			}
		}
		if pos == "" {
			return false, nil
		}
		ck, _, err := state.Get[checkpoint](ctx, st, st.Key("reship", dc, m.Cluster))
		if err != nil {
			return false, nil //nolint:nilerr // no checkpoint yet: not caught up
		}
		have, err1 := gtid.ParsePos(ck.Position)
		want, err2 := gtid.ParsePos(pos)
		if err1 != nil || err2 != nil || !have.Contains(want) {
			return false, nil
		}
	}
	return true, nil
}

// exactLoss lists the divergence entries of rec.DC fenced by rec.
func exactLoss(ctx context.Context, st *state.Store, rec Record, now time.Time) (Exact, error) {
	es, err := divergence.List(ctx, st, rec.DC)
	if err != nil {
		return Exact{}, err
	}
	x := Exact{ComputedAt: now}
	for _, e := range es {
		if e.FenceOperation != rec.ID {
			continue
		}
		x.RequestsTotal++
		if len(x.Requests) < maxListed {
			x.Requests = append(x.Requests, Lost{RequestID: e.RequestID, GTID: e.GTID, Keyspace: e.Keyspace, Shard: e.Shard,
				Owner: e.Owner, DivergenceID: e.ID()})
		}
	}
	sort.Slice(x.Requests, func(i, j int) bool { return x.Requests[i].RequestID < x.Requests[j].RequestID })
	return x, nil
}

// writeExact stores rec with its exact loss and the audit event, fenced.
func (r *Runner) writeExact(ctx context.Context, fence state.Fence, rec Record) error {
	st := r.f.o.Store
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ids := make([]string, 0, min(len(rec.Exact.Requests), 100))
	for _, l := range rec.Exact.Requests[:min(len(rec.Exact.Requests), 100)] {
		ids = append(ids, l.RequestID+"@"+l.GTID)
	}
	more := ""
	if rec.Exact.RequestsTotal > len(ids) {
		more = ",…"
	}
	now := r.f.o.Now().UTC()
	r.f.seq++
	ev := audit.Event{
		ID: audit.NewID(now, r.f.o.Actor, r.f.seq), Time: now, Actor: r.f.o.Actor, Action: ActionExact, Target: rec.DC,
		Outcome: audit.OutcomeOK, RPOTransactions: int64(rec.Exact.RequestsTotal),
		Params: map[string]string{
			"failover_id": rec.ID, "exact_requests": strconv.Itoa(rec.Exact.RequestsTotal),
			"exact_request_ids":   strings.Join(ids, ",") + more,
			"estimate_requests":   strconv.Itoa(rec.Estimate.RequestsTotal),
			"returned_at":         rec.Return.At.Format(time.RFC3339Nano),
			"reship_caught_up_at": rec.Return.CaughtUpAt.Format(time.RFC3339Nano),
		},
	}
	op, err := audit.NewOutbox(st).PutOp(ev)
	if err != nil {
		return err
	}
	key := Key(st, rec.ID)
	resp, err := st.Client().Txn(ctx).If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(key), "=", rec.Revision)).
		Then(clientv3.OpPut(key, string(data)), op).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		r.o.Logger.Warn().Str("dc", rec.DC).Str("failover", rec.ID).Int("exact", rec.Exact.RequestsTotal).
			Int("estimate", rec.Estimate.RequestsTotal).Msg("city failover: exact loss counted on the DC's return")
	}
	return nil
}
