package main

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func opKind(k drplanev1.OperationKind) string {
	if k == drplanev1.OperationKind_OPERATION_KIND_UNSPECIFIED {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), "OPERATION_KIND_"))
}

func opState(s drplanev1.OperationState) string {
	if s == drplanev1.OperationState_OPERATION_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(s.String(), "OPERATION_STATE_")
}

func handoffState(s drplanev1.HandoffState) string {
	if s == drplanev1.HandoffState_HANDOFF_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(s.String(), "HANDOFF_STATE_")
}

// ms renders milliseconds as a duration ("35ms", "1.2s").
func ms(n int64) string {
	return dur2(time.Duration(n) * time.Millisecond)
}

func dur2(d time.Duration) string {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.String()
}

func plural(n int32, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(int(n)) + " " + many
}

// what describes an operation: "evacuate dc-a1", "evacuate dc-a1 to
// dc-a2", "restore dc-a1 with move-home".
func what(op *drplanev1.Operation) string {
	s := opKind(op.GetKind()) + " " + op.GetDc()
	if op.GetTo() != "" {
		s += " to " + op.GetTo()
	}
	if op.GetMoveHome() {
		s += " with move-home"
	}
	return s
}

// renderStarted writes the answer of evacuate or restore: the plan of a
// dry run, or the stored operation and how to follow it.
func renderStarted(w io.Writer, op *drplanev1.Operation) error {
	var b bytes.Buffer
	t := op.GetTotals()
	if op.GetDryRun() {
		fmt.Fprintf(&b, "plan (dry run, nothing changed): %s, %s in %s of up to %d\n", what(op),
			plural(t.GetShards(), "shard", "shards"), plural(t.GetWaves(), "wave", "waves"), op.GetParallel())
		writePlan(&b, op)
	} else {
		fmt.Fprintf(&b, "operation %s stored: %s, %s in %s; the coordinator leader runs it\n", op.GetId(), what(op),
			plural(t.GetShards(), "shard", "shards"), plural(t.GetWaves(), "wave", "waves"))
		fmt.Fprintf(&b, "  follow: drctl operations watch %s\n  cancel: drctl operations cancel %s\n", op.GetId(), op.GetId())
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writePlan writes the targets and one line per wave and keyspace.
func writePlan(b *bytes.Buffer, op *drplanev1.Operation) {
	if len(op.GetHandoffs()) == 0 {
		b.WriteString("no shard to move\n")
		return
	}
	tw := newTable(b)
	fmt.Fprintln(tw, "TARGET\tSHARDS\tLAG P99 (about the block per wave)")
	for _, tg := range op.GetTargets() {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", cell(tg.GetDc()), tg.GetShards(), dur2(time.Duration(tg.GetLagMs()*float64(time.Millisecond)).Round(time.Millisecond)))
	}
	tw.Flush()
	type group struct {
		wave     int32
		keyspace string
	}
	count := map[group]int{}
	to := map[group]map[string]int{}
	var order []group
	for _, h := range op.GetHandoffs() {
		g := group{h.GetWave(), h.GetKeyspace()}
		if _, ok := count[g]; !ok {
			order = append(order, g)
			to[g] = map[string]int{}
		}
		count[g]++
		to[g][h.GetToDc()]++
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].wave < order[j].wave })
	tw = newTable(b)
	fmt.Fprintln(tw, "WAVE\tKEYSPACE\tSHARDS\tTO")
	for _, g := range order {
		var dcs []string
		for dc, n := range to[g] {
			dcs = append(dcs, fmt.Sprintf("%s %d", dc, n))
		}
		sort.Strings(dcs)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", g.wave, cell(g.keyspace), count[g], strings.Join(dcs, ", "))
	}
	tw.Flush()
}

// operationSummary is the closing report of a followed operation, and the
// header of operations show.
func operationSummary(op *drplanev1.Operation) string {
	var b bytes.Buffer
	t := op.GetTotals()
	fmt.Fprintf(&b, "operation %s %s: %s, %s: %d moved, %d skipped, %d aborted; %d/%d waves in %s\n", op.GetId(), opState(op.GetState()),
		what(op), plural(t.GetShards(), "shard", "shards"), t.GetMoved(), t.GetSkipped(), t.GetAborted(), t.GetWavesDone(), t.GetWaves(),
		ms(t.GetDurationMs()))
	if t.GetMoved() > 0 {
		fmt.Fprintf(&b, "  block per shard: p50 %s, p99 %s, max %s; router acknowledgements missed: %d\n",
			ms(t.GetBlockP50Ms()), ms(t.GetBlockP99Ms()), ms(t.GetBlockMaxMs()), t.GetStaleRouters())
	}
	if e := cell(op.GetError()); e != "" {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	switch op.GetState() {
	case drplanev1.OperationState_OPERATION_STATE_CANCELED:
		if op.GetKind() == drplanev1.OperationKind_OPERATION_KIND_EVACUATE {
			left := t.GetShards() - t.GetMoved() - t.GetSkipped()
			fmt.Fprintf(&b, "  %s stays DRAINING (no shard is moved into it) and still owns the %d shards not handed off, unfrozen;\n", op.GetDc(), left)
			fmt.Fprintf(&b, "  go on with drctl operations resume %s, or undo with drctl restore %s [--move-home]\n", op.GetId(), op.GetDc())
		} else {
			fmt.Fprintf(&b, "  every shard is moved or unfrozen at its old owner; go on with drctl operations resume %s\n", op.GetId())
		}
	case drplanev1.OperationState_OPERATION_STATE_FAILED:
		fmt.Fprintf(&b, "  every shard is moved or unfrozen at its old owner; fix the cause, then drctl operations resume %s\n", op.GetId())
	}
	return b.String()
}

// renderOperations writes one row per operation.
func renderOperations(w io.Writer, resp *drplanev1.ListOperationsResponse) error {
	var b bytes.Buffer
	if len(resp.GetOperations()) == 0 {
		b.WriteString("no operations\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "ID\tKIND\tDC\tTO\tSTATE\tSHARDS\tMOVED\tWAVES\tBLOCK P99\tDURATION\tCREATED\tBY\tERROR")
	for _, op := range resp.GetOperations() {
		t := op.GetTotals()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", cell(op.GetId()), opKind(op.GetKind()), cell(op.GetDc()),
			orDash(cell(op.GetTo())), opState(op.GetState()), t.GetShards(), t.GetMoved(), t.GetWavesDone(), t.GetWaves(),
			ms(t.GetBlockP99Ms()), ms(t.GetDurationMs()), when(op.GetCreatedAt()), orDash(cell(op.GetRequestedBy())),
			truncate(cell(op.GetError()), maxErrorWidth))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// renderOperation writes one operation: its summary, who asked and why,
// then one row per handoff.
func renderOperation(w io.Writer, op *drplanev1.Operation) error {
	var b bytes.Buffer
	b.WriteString(operationSummary(op))
	fmt.Fprintf(&b, "  requested by %s at %s: %s\n", orDash(cell(op.GetRequestedBy())), when(op.GetCreatedAt()), orDash(cell(op.GetReason())))
	fmt.Fprintf(&b, "  leader %s, started %s, finished %s, up to %d shards per wave\n", orDash(cell(op.GetLeader())),
		when(op.GetStartedAt()), when(op.GetFinishedAt()), op.GetParallel())
	if len(op.GetHandoffs()) == 0 {
		b.WriteString("no shard to move\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "WAVE\tKEYSPACE\tSHARD\tFROM\tTO\tBACKUP\tSTATE\tBLOCK\tWATERMARK\tREVISION\tERROR")
	for _, h := range op.GetHandoffs() {
		rev := "-"
		if h.GetRevision() > 0 {
			rev = strconv.FormatInt(h.GetRevision(), 10)
		}
		block := "-"
		if h.GetFrozenAt() != nil {
			block = ms(h.GetBlockMs())
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.GetWave(), cell(h.GetKeyspace()), h.GetShard(), cell(h.GetFromDc()),
			cell(h.GetToDc()), orDash(cell(h.GetBackupDc())), handoffState(h.GetState()), block, orDash(cell(h.GetWatermark())), rev,
			truncate(cell(h.GetError()), maxErrorWidth))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// renderChanged writes the answer of cancel or resume.
func renderChanged(w io.Writer, verb string, op *drplanev1.Operation) error {
	var next string
	switch op.GetState() {
	case drplanev1.OperationState_OPERATION_STATE_CANCELING:
		next = "it stops after its current wave, leaving every shard moved or unfrozen at its old owner"
	case drplanev1.OperationState_OPERATION_STATE_CANCELED:
		next = "it had not started"
	case drplanev1.OperationState_OPERATION_STATE_PENDING:
		next = "the coordinator leader goes on from its first unfinished wave"
	default:
		next = "now " + opState(op.GetState())
	}
	_, err := fmt.Fprintf(w, "%s operation %s (%s): %s; %s\n  follow: drctl operations watch %s\n", verb, op.GetId(), what(op),
		opState(op.GetState()), next, op.GetId())
	return err
}
