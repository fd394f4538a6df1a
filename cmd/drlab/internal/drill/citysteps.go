package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/router"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// DCControl takes a whole DC of the lab away and brings it back: the lab's
// control socket (drlab dc kill|start), which kills every process of the
// DC — its mysqld instances, its services, its etcd member and NATS server.
type DCControl interface {
	KillDC(ctx context.Context, dc string) ([]string, error)
	StartDC(ctx context.Context, dc string) error
}

// CityLoss is a DC loss as the drill and the system counted it: the city
// failover that moved the DC's shards, the loss the system reported (the
// estimate at flip time, the exact loss once the DC returned), and the
// acknowledged writes the drill found missing at the new owners, by
// request id, side by side.
type CityLoss struct {
	DC         string `json:"dc"`
	FailoverID string `json:"failover_id"`
	State      string `json:"state"`
	// Killed is when the DC was killed; Flipped when its last shard was
	// flipped (the system's flipped_at).
	Killed  time.Time `json:"killed_at"`
	Flipped time.Time `json:"flipped_at,omitzero"`
	// Owners maps each flipped shard to its new owner; Windows holds each
	// shard's loss window as the system estimated it (-1: unknown).
	Owners  map[int]string           `json:"owners"`
	Windows map[int]time.Duration    `json:"windows"`
	System  map[string]*systemLoss   `json:"-"`
	Reports map[string]LossByRequest `json:"reported"`
	// Drill are the request ids of the acknowledged writes missing at the
	// new owners; Unnamed counts those whose GTID the drill did not read.
	Drill   []string `json:"drill_lost"`
	Unnamed int      `json:"drill_lost_unnamed,omitempty"`
	// Excused are the drill ids of the acknowledged writes the system
	// reported lost, and Divergent the drill rows some DC holds that the
	// shard's new owner lacks (acknowledged or not): they are left out of
	// the checksums and counters after the loss.
	Excused   map[int64]bool `json:"-"`
	Divergent int            `json:"divergent_rows"`
	// Resolved names drill writes by the system's request id, read from
	// the divergence entries of the exact loss (the rows' primary keys):
	// for the writes whose GTID the drill could not read.
	Resolved map[int64]string `json:"-"`
	// Earlier are the writes an earlier DC loss accounts for (lost there,
	// or left behind): a later loss that flips their shard again did not
	// lose them. Rows keeps every row found divergent, also once the DC
	// that lacks it is down again.
	Earlier map[int64]bool `json:"-"`
	Rows    map[int64]bool `json:"-"`
	// Returned is when the DC was started again; RestoreID the operation
	// that handed its home shards back.
	Returned  time.Time `json:"returned_at,omitzero"`
	RestoreID string    `json:"restore_operation_id,omitempty"`
}

// systemLoss is one of the system's reports of the loss (estimate, exact).
type systemLoss struct {
	ids   map[string]bool
	total int64
}

// LossByRequest compares one of the system's reports with the drill's
// count: Total is what the system reported, Matched the drill's lost
// writes it names, DrillOnly the drill's lost writes it does not name
// (beyond its loss window, for the estimate), SystemOnly the acknowledged
// writes it names that the new owners do hold.
type LossByRequest struct {
	Total    int64 `json:"total"`
	Matched  int   `json:"matched"`
	InWindow int   `json:"in_window,omitempty"`
	// ByShard counts the estimate's matches of writes the drill could not
	// name (their GTID read failed as the DC died): each against a request
	// of the same shard the estimate names and no named write accounts for.
	ByShard    int      `json:"matched_by_shard,omitempty"`
	DrillOnly  []string `json:"drill_only,omitempty"`
	SystemOnly []string `json:"system_only,omitempty"`
}

// Names of the city failover checks.
const (
	NameCityLoss = "city failover loss matches by request id"
	NameFenced   = "the returned DC takes no write for a shard it lost"
)

// cityAvailable asks the API for the city failovers; it returns why the
// DC steps cannot run, or "".
func (d *Drill) cityAvailable(ctx context.Context, name string) string {
	if d.o.DC == nil {
		return "the drill cannot take a DC away here (no lab control socket)"
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := d.api.CityFailover.ListCityFailovers(cctx, &drplanev1.ListCityFailoversRequest{})
	if status.Code(err) == codes.Unimplemented {
		return "the coordinator does not implement city failover (CityFailoverService answers UNIMPLEMENTED)"
	}
	if name == StepDCReturn && (d.loss() == nil || !d.loss().Returned.IsZero()) {
		return "no DC is lost: dc-return follows dc-loss"
	}
	return ""
}

// lossDC is the DC a dc-loss step takes away: the one the drill's turn
// gives, unless its coordinator is the one the drill talks to (lab.json's
// API), then the next.
func (d *Drill) lossDC(dc string) string {
	if len(d.lab.DCs) < 2 || dc != d.lab.DCs[0].Name {
		return dc
	}
	return d.lab.DCs[1%len(d.lab.DCs)].Name
}

// stepDCLoss kills every process of the DC at once and waits for the city
// failover that moves its shards to their backups, and for writes to each
// of them to be acknowledged at the new owner.
func stepDCLoss(ctx context.Context, d *Drill, dc string, ev *Event) {
	ev.Target, ev.Shards = dc, d.ownedShards(dc)
	loss := &CityLoss{DC: dc, Owners: map[int]string{}, Windows: map[int]time.Duration{}, System: map[string]*systemLoss{},
		Reports: map[string]LossByRequest{}}
	ev.At = time.Now()
	loss.Killed = ev.At
	stopped, err := d.o.DC.KillDC(ctx, dc)
	d.losses = append(d.losses, loss)
	ev.City = loss
	d.mysql.down[dc] = true
	if err != nil {
		ev.Done, ev.Err = time.Now(), "kill "+dc+": "+err.Error()
		return
	}
	d.say("  killed %d processes of %s (mysqld, services, etcd member, NATS server)", len(stopped), dc)
	deadline := time.Now().Add(d.o.RecoverBound)
	var f *drplanev1.CityFailover
	for f == nil {
		f = d.cityFailover(ctx, dc, ev.At)
		if f != nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Done, ev.Err = time.Now(), fmt.Sprintf("no city failover of %s done within %s", dc, d.o.RecoverBound)
			return
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	d.noteFailover(loss, f, ev)
	d.say("  city failover %s: %d shards flipped %s after the kill, estimate %d requests",
		f.GetId(), len(loss.Owners), loss.Flipped.Sub(loss.Killed).Round(time.Millisecond), f.GetEstimate().GetRequestsTotal())
	if f.GetState() != drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE {
		ev.Done, ev.Err = time.Now(), fmt.Sprintf("city failover %s is %s: %s", f.GetId(), f.GetState(), f.GetHeld()+f.GetError())
		return
	}
	// Recovered once every flipped shard took a write at its new owner.
	for {
		if d.ackedAtOwners(loss) {
			ev.Done = time.Now()
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Done, ev.Err = time.Now(), fmt.Sprintf("not every shard of %s took a write at its new owner within %s", dc, d.o.RecoverBound)
			return
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// cityFailover returns the finished (DONE, HELD or FAILED) city failover of
// dc created after t, with its shards, or nil.
func (d *Drill) cityFailover(ctx context.Context, dc string, t time.Time) *drplanev1.CityFailover {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := d.api.CityFailover.ListCityFailovers(cctx, &drplanev1.ListCityFailoversRequest{Dc: dc})
	if err != nil {
		return nil
	}
	for _, f := range resp.GetFailovers() {
		if f.GetCreatedAt().AsTime().Before(t.Add(-time.Second)) {
			continue
		}
		switch f.GetState() {
		case drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD,
			drplanev1.CityFailoverState_CITY_FAILOVER_STATE_FAILED:
			g, err := d.api.CityFailover.GetCityFailover(cctx, &drplanev1.GetCityFailoverRequest{Id: f.GetId()})
			if err != nil {
				return nil
			}
			return g.GetFailover()
		}
	}
	return nil
}

// noteFailover records the failover's flips and estimate on the loss and
// the event (the system's record: RTO from the lease's loss to the last
// flip, block the flip itself, RPO the estimated requests).
func (d *Drill) noteFailover(loss *CityLoss, f *drplanev1.CityFailover, ev *Event) {
	loss.FailoverID, loss.State = f.GetId(), strings.TrimPrefix(f.GetState().String(), "CITY_FAILOVER_STATE_")
	if f.GetFlippedAt() != nil {
		loss.Flipped = f.GetFlippedAt().AsTime()
	}
	est := &systemLoss{ids: map[string]bool{}, total: f.GetEstimate().GetRequestsTotal()}
	for _, id := range f.GetEstimate().GetRequestIds() {
		est.ids[id] = true
	}
	for _, s := range f.GetShards() {
		if s.GetKeyspace() != d.ks.Name || !s.GetFlipped() {
			continue
		}
		sh := int(s.GetShard())
		loss.Owners[sh] = s.GetToDc()
		loss.Windows[sh] = time.Duration(s.GetLagBoundMs()) * time.Millisecond
		for _, id := range s.GetRequestIds() {
			est.ids[id] = true
		}
	}
	loss.System["estimate"] = est
	rec := &SystemRecord{ID: f.GetId(), Outcome: loss.State, RPO: est.total}
	if f.GetEstimate().GetMaxLagBoundMs() < 0 {
		rec.RPO = -1
	}
	if gone := f.GetLeaseGoneSince(); gone != nil && !loss.Flipped.IsZero() {
		rec.RTO = loss.Flipped.Sub(gone.AsTime())
	}
	rec.BlockWindow = time.Duration(f.GetFlipMs()) * time.Millisecond
	ev.Record = rec
}

// ackedAtOwners reports whether every flipped shard had a write
// acknowledged by its new owner since the kill.
func (d *Drill) ackedAtOwners(loss *CityLoss) bool {
	seen := map[int]bool{}
	for _, w := range d.writers.Writes() {
		if w.Acked() && w.Ack.After(loss.Killed) && d.mysql.dcOf[w.Instance] == loss.Owners[w.Shard] {
			seen[w.Shard] = true
		}
	}
	for sh := range loss.Owners {
		if !seen[sh] {
			return false
		}
	}
	return true
}

// stepDCReturn starts the lost DC again, checks that it takes no write for
// a shard it lost, waits for the exact loss the system counts on its
// return, and then restores it with its home shards (the safe handoff),
// so the lab ends as it began.
func stepDCReturn(ctx context.Context, d *Drill, _ string, ev *Event) {
	loss := d.loss()
	dc := loss.DC
	ev.City, ev.Target = loss, dc
	ev.Shards = sortedKeys(loss.Owners)
	ev.At = time.Now()
	if err := d.o.DC.StartDC(ctx, dc); err != nil {
		ev.Done, ev.Err = time.Now(), "start "+dc+": "+err.Error()
		return
	}
	loss.Returned = time.Now()
	delete(d.mysql.down, dc)
	d.say("  %s started again after %s", dc, loss.Returned.Sub(ev.At).Round(time.Millisecond))
	d.checks = append(d.checks, d.probeFenced(ctx, dc, loss, fmt.Sprintf("%s#%d", ev.Step, ev.Round)))
	deadline := time.Now().Add(2 * d.o.RecoverBound)
	for {
		if f := d.exactLoss(ctx, loss); f != nil {
			ev.Record = &SystemRecord{ID: f.GetId(), Outcome: "EXACT", RPO: f.GetExact().GetRequestsTotal()}
			d.say("  exact loss of %s: %d requests (estimate %d)", f.GetId(), f.GetExact().GetRequestsTotal(), loss.System["estimate"].total)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ev.Done, ev.Err = time.Now(), fmt.Sprintf("no exact loss on %s within %s of the return", loss.FailoverID, 2*d.o.RecoverBound)
			return
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	// The returned DC must be fully redundant before it takes its shards
	// back.
	if err := d.waitRedundant(ctx); err != nil {
		ev.Done, ev.Err = time.Now(), "before the restore: "+err.Error()
		return
	}
	resp, err := d.api.Evacuation.Restore(ctx, &drplanev1.RestoreRequest{Dc: dc, MoveHome: true, Reason: "drill: the lost DC returned"})
	if err != nil {
		ev.Done, ev.Err = time.Now(), "restore: "+err.Error()
		return
	}
	loss.RestoreID = resp.GetOperationId()
	var op Event
	d.waitOperation(ctx, loss.RestoreID, &op)
	ev.Done = op.Done
	if op.Err != "" {
		ev.Err = op.Err
	}
	if op.Record != nil {
		ev.Record.RTO, ev.Record.BlockWindow = op.Record.RTO, op.Record.BlockWindow
	}
}

// exactLoss returns the failover once its exact loss is recorded, and
// keeps that loss.
func (d *Drill) exactLoss(ctx context.Context, loss *CityLoss) *drplanev1.CityFailover {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	g, err := d.api.CityFailover.GetCityFailover(cctx, &drplanev1.GetCityFailoverRequest{Id: loss.FailoverID})
	if err != nil || g.GetFailover().GetExact() == nil {
		return nil
	}
	f := g.GetFailover()
	ex := &systemLoss{ids: map[string]bool{}, total: f.GetExact().GetRequestsTotal()}
	if loss.Resolved == nil {
		loss.Resolved = map[int64]string{}
	}
	for _, r := range f.GetExact().GetRequests() {
		ex.ids[r.GetRequestId()] = true
		if r.GetDivergenceId() == "" || len(loss.Resolved) >= maxResolved {
			continue
		}
		dv, err := d.api.Divergence.GetDivergence(cctx, &drplanev1.GetDivergenceRequest{Id: r.GetDivergenceId()})
		if err != nil {
			continue
		}
		for _, id := range rowIDs(dv.GetChange()) {
			loss.Resolved[id] = r.GetRequestId()
		}
	}
	loss.System["exact"] = ex
	return f
}

// maxResolved bounds the divergence entries read for one exact loss.
const maxResolved = 1000

// rowIDs returns the drill ids (the orders table's id key) of the rows a
// change inserted.
func rowIDs(ch *drplanev1.ChangeEvent) []int64 {
	var out []int64
	for _, row := range ch.GetRows() {
		if row.GetOp() != drplanev1.RowOp_ROW_OP_INSERT {
			continue
		}
		for _, k := range row.GetKey() {
			if k.GetName() != "id" {
				continue
			}
			switch v := k.GetValue().GetKind().(type) {
			case *drplanev1.Value_Int:
				out = append(out, v.Int)
			case *drplanev1.Value_Uint:
				out = append(out, int64(v.Uint)) //nolint:gosec // drill ids are below 2^63
			}
		}
	}
	return out
}

// errProbe ends a probe write that a router let through: nothing is
// written.
var errProbe = errors.New("drill: probe admitted")

// probeFenced asks the returned DC's router for a write to every shard it
// lost (nothing is written): each must be refused with NotOwner naming the
// new owner. It also looks for a write the DC's instances acknowledged
// for those shards since the flip.
func (d *Drill) probeFenced(ctx context.Context, dc string, loss *CityLoss, label string) CheckResult {
	var bad []string
	r := d.writers.Router(dc)
	// The DC's router reads its routes from the drill's coordinator: ready
	// at once.
	for _, sh := range sortedKeys(loss.Owners) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.Write(pctx, d.ks.Name, d.writers.Keys()[sh], func(*sql.DB, router.Route) error { return errProbe })
		cancel()
		var no *router.NotOwner
		switch {
		case errors.Is(err, errProbe):
			bad = append(bad, fmt.Sprintf("the router of %s admitted a write to shard %d, owned by %s", dc, sh, loss.Owners[sh]))
		case !errors.As(err, &no):
			bad = append(bad, fmt.Sprintf("the router of %s answered %v for shard %d, not NotOwner", dc, err, sh))
		case no.Owner != loss.Owners[sh]:
			bad = append(bad, fmt.Sprintf("the router of %s names %s as the owner of shard %d, the failover moved it to %s", dc, no.Owner, sh, loss.Owners[sh]))
		}
	}
	bad = append(bad, writtenAfterFlip(loss, d.writers.Writes(), d.mysql.dcOf, dc)...)
	return result(NameFenced, label, bad, fmt.Sprintf("%d shards refused NotOwner by the router of %s, none written there since the flip", len(loss.Owners), dc))
}

// writtenAfterFlip lists the writes to a lost shard that an instance of the
// lost DC acknowledged after the flip (dcOf maps instances to DCs). The
// bound is the flip, not the kill's start: the kill takes the DC's
// processes one after the other, and a master still running while the
// others die commits and acknowledges writes as its owner until then —
// those are the failover's to count as loss, not a fence broken.
func writtenAfterFlip(loss *CityLoss, writes []Write, dcOf map[string]string, dc string) []string {
	var bad []string
	for _, w := range writes {
		if _, lost := loss.Owners[w.Shard]; lost && w.Acked() && w.Ack.After(loss.Flipped) && dcOf[w.Instance] == dc {
			bad = append(bad, fmt.Sprintf("write %d to shard %d acknowledged by %s at %s, after the flip at %s",
				w.ID, w.Shard, w.Instance, w.Ack.Format("15:04:05.000"), loss.Flipped.Format("15:04:05.000")))
		}
	}
	return bad
}

// divergent finds the drill rows that some DC holds and the new owner of
// their shard lacks, among the writes a city failover could have left
// behind (to a flipped shard, begun before its flip): they never reach the
// new owner. present holds the live DCs' ids.
func divergent(loss *CityLoss, present map[string]map[int64]bool, writes []Write, out map[int64]bool) {
	for id := range loss.Rows {
		out[id] = true
	}
	for _, w := range writes {
		owner, ok := loss.Owners[w.Shard]
		if !ok || !w.Start.Before(loss.flipEnd()) || loss.Earlier[w.ID] {
			continue
		}
		have, live := present[owner]
		if !live || have[w.ID] {
			continue
		}
		for dc, ids := range present {
			if dc != owner && ids[w.ID] {
				out[w.ID] = true
				break
			}
		}
	}
}

// flipEnd is when the failover's flips were over: the system's flipped_at,
// or the kill when the failover never flipped.
func (l *CityLoss) flipEnd() time.Time {
	if l.Flipped.IsZero() {
		return l.Killed
	}
	return l.Flipped
}

// compareLoss sets the drill's count of the loss (the acknowledged writes
// to flipped shards missing at their new owners) and compares it with the
// system's report, by request id; it returns the check. The estimate also
// excuses a write inside its shard's loss window; the exact loss must name
// every lost write, and nothing the new owners hold.
func compareLoss(loss *CityLoss, label string, acked []Write, present map[string]map[int64]bool) CheckResult {
	prev := loss.Excused
	loss.Drill, loss.Unnamed, loss.Excused = nil, 0, map[int64]bool{}
	which := "estimate"
	if _, ok := loss.System["exact"]; ok {
		which = "exact"
	}
	sys := loss.System[which]
	if sys == nil {
		return result(NameCityLoss, label, []string{"the system reported no loss of " + loss.DC}, "")
	}
	rep := LossByRequest{Total: sys.total}
	var bad []string
	// The estimate's requests per shard that no named write accounts for:
	// what a write the drill could not name may be matched against.
	spare := map[int]int{}
	if which == "estimate" {
		named := map[string]bool{}
		for _, w := range acked {
			if id := loss.requestID(w); id != "" {
				named[id] = true
			}
		}
		for id := range sys.ids {
			if !named[id] {
				spare[shardOfRequest(id)]++
			}
		}
	}
	for _, w := range acked {
		owner, ok := loss.Owners[w.Shard]
		if !ok || !w.Start.Before(loss.flipEnd()) || loss.Earlier[w.ID] {
			continue
		}
		have, live := present[owner]
		if !live {
			// The new owner is down again: what the report accounted for
			// stays accounted for.
			if prev[w.ID] {
				loss.Excused[w.ID] = true
			}
			continue
		}
		id := loss.requestID(w)
		if have[w.ID] {
			if id != "" && sys.ids[id] {
				rep.SystemOnly = append(rep.SystemOnly, id)
			}
			continue
		}
		if id == "" {
			loss.Unnamed++
			if which == "estimate" && loss.inWindow(w) {
				rep.InWindow++
				loss.Excused[w.ID] = true
				continue
			}
			if spare[w.Shard] > 0 {
				spare[w.Shard]--
				rep.ByShard++
				loss.Excused[w.ID] = true
				continue
			}
			bad = append(bad, fmt.Sprintf("write %d (shard %d) is missing at %s and has no request id to match", w.ID, w.Shard, owner))
			continue
		}
		loss.Drill = append(loss.Drill, id)
		switch {
		case sys.ids[id]:
			rep.Matched++
			loss.Excused[w.ID] = true
		case which == "estimate" && loss.inWindow(w):
			rep.InWindow++
			loss.Excused[w.ID] = true
		default:
			rep.DrillOnly = append(rep.DrillOnly, id)
			bad = append(bad, fmt.Sprintf("write %d (%s, shard %d) is missing at %s; the %s does not name it", w.ID, id, w.Shard, owner, which))
		}
	}
	if which == "exact" {
		for _, id := range rep.SystemOnly {
			bad = append(bad, fmt.Sprintf("the exact loss names %s, which %s holds", id, loss.Owners[shardOfRequest(id)]))
		}
	}
	sort.Strings(loss.Drill)
	loss.Reports[which] = rep
	detail := fmt.Sprintf("%s: %d requests reported, %d acknowledged writes missing at the new owners, %d of them named",
		which, sys.total, len(loss.Drill), rep.Matched)
	if rep.InWindow > 0 {
		detail += fmt.Sprintf(", %d inside the loss window", rep.InWindow)
	}
	if rep.ByShard > 0 {
		detail += fmt.Sprintf(", %d without a GTID matched by shard", rep.ByShard)
	}
	return result(NameCityLoss, label, bad, detail)
}

// inWindow reports whether an acknowledged write falls inside its shard's
// loss window, as the estimate gave it.
func (l *CityLoss) inWindow(w Write) bool {
	win, ok := l.Windows[w.Shard]
	return ok && win >= 0 && !w.Ack.Before(l.Killed.Add(-win))
}

// requestID names a write by the system's request id: from the GTID the
// writer read after the commit, or from the divergence entry that holds
// its row.
func (l *CityLoss) requestID(w Write) string {
	if id := w.RequestID(); id != "" {
		return id
	}
	return l.Resolved[w.ID]
}

// shardOfRequest reads the shard of a request id ("<gtid>/<shard>").
func shardOfRequest(id string) int {
	_, s, _ := strings.Cut(id, "/")
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// loss is the last DC loss of the drill, or nil.
func (d *Drill) loss() *CityLoss {
	if len(d.losses) == 0 {
		return nil
	}
	return d.losses[len(d.losses)-1]
}

// digests reads the DCs' checksums; after a DC loss it first finds the
// rows the losses left behind (see divergent) and leaves them out.
func (d *Drill) digests(ctx context.Context) []Digest {
	if len(d.losses) > 0 {
		writes := d.writers.Writes()
		lo, hi := idRange(writes)
		if present, err := d.mysql.Present(ctx, lo, hi); err == nil {
			ex := map[int64]bool{}
			for _, l := range d.losses {
				own := map[int64]bool{}
				divergent(l, present, writes, own)
				l.Rows, l.Divergent = own, len(own)
				maps.Copy(ex, own)
			}
			d.mysql.exclude = ex
		}
	}
	return d.mysql.Digests(ctx)
}

// lossChecks compares every DC loss with the system's report (adding a
// check each) and returns the acknowledged writes the system reported
// lost.
func (d *Drill) lossChecks(label string, acked []Write, present map[string]map[int64]bool, add func(CheckResult)) map[int64]bool {
	if len(d.losses) == 0 {
		return nil
	}
	out := map[int64]bool{}
	for _, l := range d.losses {
		l.Earlier = maps.Clone(out)
		for _, e := range d.losses {
			if e == l {
				break
			}
			maps.Copy(l.Earlier, e.Rows)
		}
		add(compareLoss(l, label, acked, present))
		for id := range l.Excused {
			out[id] = true
		}
	}
	return out
}

func idRange(writes []Write) (lo, hi int64) {
	for _, w := range writes {
		if lo == 0 || w.ID < lo {
			lo = w.ID
		}
		hi = max(hi, w.ID)
	}
	return lo, hi
}
