package reship

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/reship/internal/ship"
)

// errNotInBinlog is MariaDB's ER_MASTER_FATAL_ERROR_READING_BINLOG: the dump
// asked to start from a GTID the master's binlog does not hold.
const errNotInBinlog = 1236

const (
	// rewindScanMax bounds how many messages of the outbound stream are read
	// back to name the lost requests.
	rewindScanMax = 200_000
	// maxLostRequests bounds the request ids kept on the failover record
	// (an etcd value); the count is always exact.
	maxLostRequests = 10_000
	// recordWait bounds the wait for the failover record to be finished
	// before the rewind is added to it.
	recordWait = 15 * time.Second
)

// ErrNoRewind means the checkpoint is not past the master's binlog in any
// domain: the start failure is not a lossy failover.
var ErrNoRewind = errors.New("reship: checkpoint not past the master's binlog")

// lostRange is the sequence numbers (After, Upto] of one GTID domain that
// reship shipped and the master does not have.
type lostRange struct {
	Domain      uint32
	After, Upto uint64
}

// rewindPlan is where reship resumes after a lossy failover and what was
// lost.
type rewindPlan struct {
	From, To     string
	Lost         []lostRange
	Transactions int64
}

// planRewind decides the rewind from reship's checkpoint and the master's
// gtid_binlog_pos, gtid_slave_pos and server_id. A domain of the checkpoint
// is lost past the master's position when the master did not write the
// checkpoint's GTID itself and both what it applied from its former master
// (gtid_slave_pos) or, failing that, its binlog end are below it; reship
// resumes there. It returns ErrNoRewind when no domain is lost.
func planRewind(checkpoint, binlog, slave string, serverID uint32) (rewindPlan, error) {
	cp, err := gtid.ParsePos(checkpoint)
	if err != nil {
		return rewindPlan{}, fmt.Errorf("reship: checkpoint: %w", err)
	}
	bin, err := gtid.ParsePos(binlog)
	if err != nil {
		return rewindPlan{}, fmt.Errorf("reship: master gtid_binlog_pos: %w", err)
	}
	sl, err := gtid.ParsePos(slave)
	if err != nil {
		return rewindPlan{}, fmt.Errorf("reship: master gtid_slave_pos: %w", err)
	}
	plan := rewindPlan{From: checkpoint}
	to := gtid.Pos{}
	for _, g := range cp {
		if g.ServerID == serverID {
			to = append(to, g)
			continue
		}
		fork, ok := forkOf(g, bin, sl)
		if !ok {
			to = append(to, g)
			continue
		}
		plan.Lost = append(plan.Lost, lostRange{Domain: g.Domain, After: fork.Seq, Upto: g.Seq})
		plan.Transactions += int64(min(g.Seq-fork.Seq, uint64(1)<<62)) //nolint:gosec // bounded above
		if fork.Seq > 0 {
			to = append(to, fork)
		}
	}
	if len(plan.Lost) == 0 {
		return rewindPlan{}, ErrNoRewind
	}
	plan.To = to.String()
	return plan, nil
}

// forkOf returns the last GTID of g's domain the master shares with the
// checkpoint, when that is before g: its gtid_slave_pos, else its binlog
// end, else (the domain is unknown to it) the domain's start.
func forkOf(g gtid.GTID, bin, slave gtid.Pos) (gtid.GTID, bool) {
	for _, p := range []gtid.Pos{slave, bin} {
		for _, h := range p {
			if h.Domain == g.Domain && h.Seq < g.Seq {
				return h, true
			}
		}
	}
	if _, ok := bin.Seq(g.Domain); !ok {
		if _, ok := slave.Seq(g.Domain); !ok {
			return gtid.GTID{Domain: g.Domain}, true
		}
	}
	return gtid.GTID{}, false
}

// inLost reports whether GTID id falls in one of the plan's lost ranges,
// and whether it is at or before the fork of its domain.
func (p rewindPlan) inLost(id string) (lost bool, domain uint32, before bool) {
	pos, err := gtid.ParsePos(id)
	if err != nil || len(pos) != 1 {
		return false, 0, false
	}
	g := pos[0]
	for _, r := range p.Lost {
		if r.Domain == g.Domain {
			return g.Seq > r.After && g.Seq <= r.Upto, g.Domain, g.Seq <= r.After
		}
	}
	return false, g.Domain, false
}

// lostRequests reads the outbound stream back from its end and returns the
// GTIDs and request ids of the plan's lost ranges, in capture order, and
// the events by request id. It
// stops when every lost domain reached its fork, at the stream's first
// message, or after rewindScanMax messages; complete is false when it
// stopped for the bound.
func lostRequests(ctx context.Context, js jetstream.JetStream, dc string, plan rewindPlan) (gtids, requests []string, events map[string]*drplanev1.ChangeEvent, complete bool, err error) {
	s, err := js.Stream(ctx, embednats.OutStream(dc))
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("reship: outbound stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("reship: outbound stream: %w", err)
	}
	events = map[string]*drplanev1.ChangeEvent{}
	open := map[uint32]bool{}
	for _, r := range plan.Lost {
		open[r.Domain] = true
	}
	seenReq, seenGTID := map[string]bool{}, map[string]bool{}
	scanned := 0
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(open) > 0; seq-- {
		if scanned >= rewindScanMax {
			slices.Reverse(gtids)
			slices.Reverse(requests)
			return gtids, requests, events, false, nil
		}
		scanned++
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, nil, false, fmt.Errorf("reship: outbound message %d: %w", seq, err)
		}
		var ev drplanev1.ChangeEvent
		if proto.Unmarshal(raw.Data, &ev) != nil || ev.GetBarrier() != "" {
			continue
		}
		lost, domain, before := plan.inLost(ev.GetGtid())
		// A republished copy sits at the tail out of order: it names a lost
		// request but says nothing about where the fork is.
		republished := strings.Contains(raw.Header.Get(jetstream.MsgIDHeader), ":retry-")
		if before && !republished {
			delete(open, domain)
		}
		if !lost {
			continue
		}
		if !seenGTID[ev.GetGtid()] {
			seenGTID[ev.GetGtid()] = true
			gtids = append(gtids, ev.GetGtid())
		}
		if !seenReq[ev.GetRequestId()] {
			seenReq[ev.GetRequestId()] = true
			requests = append(requests, ev.GetRequestId())
			events[ev.GetRequestId()] = &ev
		}
	}
	slices.Reverse(gtids)
	slices.Reverse(requests)
	return gtids, requests, events, true, nil
}

// rewind handles a start position the master's binlog does not hold: when
// the checkpoint is past the master in some domain (a failover promoted a
// replica that lacked transactions reship had shipped), it names the lost
// requests from the outbound stream, adds them to the failover record and
// the audit log, and moves the checkpoint back to the master's position.
// It returns ErrNoRewind when the checkpoint is not past the master.
func (e *Engine) rewind(ctx context.Context, rec state.MasterRecord) error {
	cp, ok := e.cp.Current()
	if !ok {
		return ErrNoRewind
	}
	binlog, slave, serverID, err := e.capturer.Positions(ctx, rec.Addr)
	if err != nil {
		return err
	}
	plan, err := planRewind(cp.Position, binlog, slave, serverID)
	if err != nil {
		return err
	}
	gtids, requests, events, complete, err := lostRequests(ctx, e.js, e.o.DC, plan)
	if err != nil {
		return err
	}
	rw := state.Rewind{
		From: plan.From, To: plan.To, Transactions: plan.Transactions, LostGTIDs: gtids, LostRequests: requests,
		LostRequestsTotal: len(requests), Complete: complete, By: "reship@" + e.o.DC, At: e.o.Now().UTC(),
	}
	if len(rw.LostRequests) > maxLostRequests {
		rw.LostRequests = rw.LostRequests[:maxLostRequests]
	}
	log := e.o.Logger.With().Str("master", rec.Instance).Str("from", plan.From).Str("to", plan.To).Logger()
	log.Warn().Int64("transactions", plan.Transactions).Int("requests", len(requests)).Strs("gtids", gtids).
		Msg("lossy failover: the new master lacks transactions already shipped; rewinding to its position")
	id, err := e.recordRewind(ctx, rec, rw)
	if err != nil {
		return err
	}
	e.auditRewind(ctx, rec, id, rw)
	if err := e.recordDiscarded(ctx, id, requests, events); err != nil {
		return err
	}
	e.cp.Advance(ship.Checkpoint{Position: plan.To, Master: rec.Instance})
	if err := e.cp.Flush(ctx); err != nil {
		return err
	}
	e.metrics.rewinds.Inc()
	e.metrics.lostRequests.Add(float64(len(requests)))
	return nil
}

// recordRewind adds rw to the failover record that made rec.Instance the
// master (the newest one naming it), once the agent finished the record;
// it returns the record's id, or "" when there is none.
func (e *Engine) recordRewind(ctx context.Context, rec state.MasterRecord, rw state.Rewind) (string, error) {
	deadline := e.o.Now().Add(recordWait)
	for {
		recs, err := e.o.Store.Failovers(ctx, e.o.DC, e.o.Cluster)
		if err != nil {
			return "", err
		}
		var fo *state.FailoverRecord
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].NewMaster == rec.Instance {
				fo = &recs[i]
				break
			}
		}
		switch {
		case fo == nil && e.o.Now().After(deadline):
			e.o.Logger.Warn().Str("master", rec.Instance).Msg("no failover record names the new master: the rewind is only audited")
			return "", nil
		case fo == nil || (!fo.Done() && !e.o.Now().After(deadline)):
			if !retry.Sleep(ctx, 100*time.Millisecond) {
				return "", ctx.Err()
			}
			continue
		}
		key := e.o.Store.FailoverKey(fo.DC, fo.Cluster, fo.ID)
		cur, rev, err := state.Get[state.FailoverRecord](ctx, e.o.Store, key)
		if err != nil {
			return "", err
		}
		cur.Rewind = &rw
		_, err = state.Put(ctx, e.o.Store, key, cur, state.PutOptions{PrevRev: rev})
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		return fo.ID, err
	}
}

// auditRewind writes the rewind's audit event; a failure is logged (the
// failover record holds the account).
func (e *Engine) auditRewind(ctx context.Context, rec state.MasterRecord, failoverID string, rw state.Rewind) {
	now := e.o.Now()
	ids := rw.LostRequests
	more := ""
	if len(ids) > 100 {
		ids, more = ids[:100], ",…"
	}
	ev := audit.Event{
		ID:   audit.NewID(now, "reship-"+e.o.DC+"-"+e.o.Cluster, uint64(now.UnixNano())), //nolint:gosec // positive
		Time: now.UTC(), Actor: "reship:" + e.o.DC, Action: "reship.rewind", Target: e.o.DC + "/" + e.o.Cluster,
		Params: map[string]string{
			"failover_id": failoverID, "master": rec.Instance, "from": rw.From, "to": rw.To,
			"lost_transactions": strconv.FormatInt(rw.Transactions, 10),
			"lost_requests":     strconv.Itoa(rw.LostRequestsTotal),
			"request_ids":       strings.Join(ids, ",") + more,
		},
		Outcome: audit.OutcomeOK, RPOTransactions: rw.Transactions,
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := audit.NewOutbox(e.o.Store).Put(actx, ev); err != nil {
		e.o.Logger.Warn().Err(err).Msg("could not write the rewind's audit event")
	}
}

// recordDiscarded records each shipped request a lossy failover discarded
// in this DC as a divergence entry of kind discarded (with the change, the
// failover and the shard's owner), like the changes refused after a
// handoff: the other DCs may hold it, this one does not. At most
// maxLostRequests are recorded; an entry recorded before is left as it is.
func (e *Engine) recordDiscarded(ctx context.Context, failoverID string, requests []string, events map[string]*drplanev1.ChangeEvent) error {
	now := e.o.Now().UTC()
	recorded := 0
	for _, id := range requests[:min(len(requests), maxLostRequests)] {
		ev := events[id]
		if ev == nil {
			continue
		}
		data, _ := proto.Marshal(ev)
		ent := divergence.Entry{
			Origin: e.o.DC, RequestID: id, GTID: ev.GetGtid(), Keyspace: ev.GetKeyspace(), Shard: ev.GetShard(),
			Kind: divergence.KindDiscarded, FailoverID: failoverID, Owner: e.router.Owner(ev.GetKeyspace(), ev.GetShard()),
			DetectedBy: "reship@" + e.o.DC, DetectedAt: now, CommitTime: ev.GetCommitTime().AsTime(),
			Rows: len(ev.GetRows()), Change: data,
		}
		for {
			created, err := divergence.Record(ctx, e.o.Store, ent)
			if err == nil {
				if created {
					recorded++
				}
				break
			}
			e.o.Logger.Warn().Err(err).Str("request", id).Msg("discarded request not recorded as divergence yet; retrying")
			if !retry.Sleep(ctx, 250*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	if recorded > 0 {
		e.o.Logger.Warn().Int("entries", recorded).Str("failover_id", failoverID).
			Msg("shipped requests this DC lost in a failover recorded as divergence (kind discarded)")
	}
	return nil
}
