package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// renderSwitchover writes the outcome of a finished switchover:
//
//	switchover of dc-a1/db done: dc-a1-db1 → dc-a1-db2
//	  RTO 1.5s, block window 35ms, RPO 0 transactions
//	  intent so-…, record …
func renderSwitchover(w io.Writer, resp *drplanev1.SwitchoverResponse) error {
	var b bytes.Buffer
	in, rec := resp.GetIntent(), resp.GetRecord()
	name := in.GetDc() + "/" + in.GetCluster()
	if rec == nil {
		fmt.Fprintf(&b, "switchover of %s done; the HA agent wrote no failover record\n", name)
		fmt.Fprintf(&b, "  intent %s\n", in.GetId())
		_, err := w.Write(b.Bytes())
		return err
	}
	fmt.Fprintf(&b, "switchover of %s done: %s → %s\n", name, orNone(cell(rec.GetOldMaster())), orNone(cell(rec.GetNewMaster())))
	fmt.Fprintf(&b, "  RTO %s, block window %s, RPO %s\n", dur(rec.GetRto()), dur(rec.GetBlockWindow()), rpo(rec.GetRpoTransactions(), true))
	fmt.Fprintf(&b, "  intent %s, record %s\n", in.GetId(), rec.GetId())
	_, err := w.Write(b.Bytes())
	return err
}

// renderFailovers writes one row per failover record.
func renderFailovers(w io.Writer, resp *drplanev1.ListFailoversResponse) error {
	var b bytes.Buffer
	if len(resp.GetRecords()) == 0 {
		b.WriteString("no failovers recorded\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "ID\tKIND\tCLUSTER\tMASTER\tOUTCOME\tRTO\tRPO\tSHIPPED LOST\tBLOCK\tTRIGGER\tERROR")
	for _, r := range resp.GetRecords() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(r.GetId()), kind(r.GetKind()), cell(r.GetDc()+"/"+r.GetCluster()),
			orDash(cell(r.GetOldMaster()))+" -> "+orDash(cell(r.GetNewMaster())), outcome(r.GetOutcome()),
			dur(r.GetRto()), rpo(r.GetRpoTransactions(), false), shippedLost(r.GetRewind()), dur(r.GetBlockWindow()), trigger(r),
			truncate(cell(r.GetError()), maxErrorWidth))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// renderKillSwitches writes one row per kill switch.
func renderKillSwitches(w io.Writer, resp *drplanev1.ListKillSwitchesResponse) error {
	var b bytes.Buffer
	if len(resp.GetKillSwitches()) == 0 {
		b.WriteString("no kill switches set: automatic failover is on everywhere\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "SCOPE\tSET BY\tSET AT\tREASON")
	for _, ks := range resp.GetKillSwitches() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(ks.GetScope()), orDash(cell(ks.GetSetBy())), when(ks.GetSetAt()), cell(ks.GetReason()))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

func renderKillSwitchSet(w io.Writer, resp *drplanev1.SetKillSwitchResponse) error {
	ks := resp.GetKillSwitch()
	_, err := fmt.Fprintf(w, "kill switch set: %s (automatic failover stopped there)\n  reason: %s\n  set by %s at %s\n",
		scopeName(ks.GetScope()), cell(ks.GetReason()), orDash(cell(ks.GetSetBy())), when(ks.GetSetAt()))
	return err
}

func renderKillSwitchClear(w io.Writer, dc, cluster string, resp *drplanev1.ClearKillSwitchResponse) error {
	if !resp.GetCleared() {
		_, err := fmt.Fprintf(w, "no kill switch was set for %s\n", scopeName(scopeOf(dc, cluster)))
		return err
	}
	ks := resp.GetKillSwitch()
	_, err := fmt.Fprintf(w, "kill switch cleared: %s (was set by %s: %s)\n",
		scopeName(ks.GetScope()), orDash(cell(ks.GetSetBy())), cell(ks.GetReason()))
	return err
}

// scopeOf is the kill-switch scope of --dc and --cluster.
func scopeOf(dc, cluster string) string {
	switch {
	case dc == "":
		return "global"
	case cluster == "":
		return "dc/" + dc
	}
	return "cluster/" + dc + "/" + cluster
}

// scopeName describes a scope: "everywhere (global)", "DC dc-a1",
// "cluster dc-a1/db".
func scopeName(scope string) string {
	if rest, ok := strings.CutPrefix(scope, "dc/"); ok {
		return "DC " + rest
	}
	if rest, ok := strings.CutPrefix(scope, "cluster/"); ok {
		return "cluster " + rest
	}
	if scope == "global" {
		return "everywhere (global)"
	}
	return scope
}

// dur renders a duration compactly ("1.5s", "35ms"); "-" when absent.
func dur(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	v := d.AsDuration()
	switch {
	case v >= time.Second:
		return v.Round(time.Millisecond).String()
	case v >= time.Millisecond:
		return v.Round(100 * time.Microsecond).String()
	}
	return v.String()
}

// rpo renders lost transactions; -1 means unknown. long adds the unit.
func rpo(n int64, long bool) string {
	switch {
	case n < 0:
		return "unknown"
	case !long:
		return strconv.FormatInt(n, 10)
	case n == 1:
		return "1 transaction"
	}
	return strconv.FormatInt(n, 10) + " transactions"
}

// shippedLost is the number of requests a lossy failover lost in the DC
// after reship had shipped them ("-" when none was lost that way).
func shippedLost(rw *drplanev1.FailoverRewind) string {
	if rw == nil {
		return "-"
	}
	n := strconv.Itoa(int(rw.GetLostRequestsTotal())) + " req"
	if !rw.GetComplete() {
		n += " (at least)"
	}
	return n
}

func kind(k drplanev1.FailoverKind) string {
	switch k {
	case drplanev1.FailoverKind_FAILOVER_KIND_FAILOVER:
		return "failover"
	case drplanev1.FailoverKind_FAILOVER_KIND_SWITCHOVER:
		return "switchover"
	}
	return "-"
}

func outcome(o drplanev1.FailoverOutcome) string {
	if o == drplanev1.FailoverOutcome_FAILOVER_OUTCOME_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(o.String(), "FAILOVER_OUTCOME_")
}

// trigger is the analysis code of an automatic failover, else the trigger.
func trigger(r *drplanev1.FailoverRecord) string {
	if a := cell(r.GetAnalysis()); a != "" {
		return a
	}
	return orDash(cell(r.GetTrigger()))
}

// when renders a timestamp in UTC to the second; "-" when absent.
func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

func renderRelease(w io.Writer, cluster string, resp *drplanev1.ReleaseFailoverHoldResponse) error {
	if !resp.GetHeld() {
		_, err := fmt.Fprintf(w, "released %s (no failover was held)\n", cluster)
		return err
	}
	h := resp.GetHold()
	_, err := fmt.Fprintf(w, "released %s: failover was held: %s (%s)\n", cluster, cell(h.GetReason()), cell(h.GetDetail()))
	return err
}
