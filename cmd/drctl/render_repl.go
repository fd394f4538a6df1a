package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// renderReplStatus writes one row per DC pair, then the ledger backlog:
//
//	ORIGIN  TARGET  LAG P50  LAG P99  EVENTS/S  PENDING  APPLIED  RETRIED  DEAD-LETTERED  WATERMARK AGE
//	dc-a1   dc-b1   3.2ms    41.7ms   410.5     17       1200     1        2              2s
//
//	LEDGER BACKLOG
//	DC     BACKLOG  PENDING  DEAD-LETTERED  OLDEST PENDING
//	dc-a1  2        1        1              2025-03-01 11:00:00Z
func renderReplStatus(w io.Writer, resp *drplanev1.GetReplicationStatusResponse) error {
	var b bytes.Buffer
	if len(resp.GetPairs()) == 0 {
		b.WriteString("no DC pairs\n")
	} else {
		tw := newTable(&b)
		fmt.Fprintln(tw, "ORIGIN\tTARGET\tLAG P50\tLAG P99\tEVENTS/S\tPENDING\tAPPLIED\tRETRIED\tDEAD-LETTERED\tWATERMARK AGE")
		for _, p := range resp.GetPairs() {
			if !p.GetReporting() {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\t-\t%s\n", cell(p.GetOriginDc()), cell(p.GetTargetDc()),
					retried(resp, p), age(p.GetWatermarkAge()))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\n", cell(p.GetOriginDc()), cell(p.GetTargetDc()),
				millis(p.GetLagP50Ms()), millis(p.GetLagP99Ms()), strconv.FormatFloat(p.GetEventsPerSec(), 'f', 1, 64),
				p.GetPending(), p.GetApplied(), retried(resp, p), p.GetDeadLettered(), age(p.GetWatermarkAge()))
		}
		tw.Flush()
	}
	b.WriteString("\nLEDGER BACKLOG\n")
	switch {
	case !resp.GetLedger():
		b.WriteString("not tracked by this coordinator (no nats_url)\n")
	case len(resp.GetBacklog()) == 0:
		b.WriteString("no DCs\n")
	default:
		tw := newTable(&b)
		fmt.Fprintln(tw, "DC\tBACKLOG\tPENDING\tDEAD-LETTERED\tOLDEST PENDING")
		for _, bl := range resp.GetBacklog() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", cell(bl.GetDc()), bl.GetBacklog(), bl.GetPending(), bl.GetDeadLettered(),
				when(bl.GetOldestPendingCapturedAt()))
		}
		tw.Flush()
	}
	_, err := w.Write(b.Bytes())
	return err
}

// retried is the pair's ledger retry count, "-" without a ledger.
func retried(resp *drplanev1.GetReplicationStatusResponse, p *drplanev1.ReplicationPair) string {
	if !resp.GetLedger() {
		return "-"
	}
	return strconv.FormatUint(p.GetRetried(), 10)
}

// millis renders milliseconds: "3.2ms", "1.25s".
func millis(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
}

// age renders a watermark age to the second ("-" when absent).
func age(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Second).String()
}

// requestState is the state's name without its enum prefix.
func requestState(s drplanev1.RequestState) string {
	if s == drplanev1.RequestState_REQUEST_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(s.String(), "REQUEST_STATE_")
}

// renderLedgerRecord writes a request's ledger record: its fields, then
// one row per DC.
func renderLedgerRecord(w io.Writer, r *drplanev1.LedgerRecord) error {
	var b bytes.Buffer
	tw := newTable(&b)
	fmt.Fprintf(tw, "request\t%s:%s\n", cell(r.GetOriginDc()), cell(r.GetRequestId()))
	fmt.Fprintf(tw, "state\t%s\n", requestState(r.GetState()))
	fmt.Fprintf(tw, "gtid\t%s\n", orDash(cell(r.GetGtid())))
	shard := "-"
	if r.GetKeyspace() != "" {
		shard = fmt.Sprintf("%s/%d", cell(r.GetKeyspace()), r.GetShard())
	}
	fmt.Fprintf(tw, "shard\t%s\n", shard)
	captured := "not reported yet"
	if r.GetCapturedAt() != nil {
		captured = when(r.GetCapturedAt())
	}
	fmt.Fprintf(tw, "captured\t%s\n", captured)
	seq := "-"
	if r.GetOutboundSeq() > 0 {
		seq = strconv.FormatUint(r.GetOutboundSeq(), 10)
	}
	fmt.Fprintf(tw, "outbound seq\t%s\n", seq)
	fmt.Fprintf(tw, "targets\t%s\n", orDash(strings.Join(r.GetTargets(), ", ")))
	attempts := strconv.Itoa(int(r.GetAttempts()))
	if r.GetLastRetryAt() != nil {
		attempts += " (last " + when(r.GetLastRetryAt()) + ")"
	}
	fmt.Fprintf(tw, "retries\t%s\n", attempts)
	tw.Flush()
	if len(r.GetTargetStatus()) > 0 {
		b.WriteByte('\n')
		tw = newTable(&b)
		fmt.Fprintln(tw, "DC\tAPPLIED\tDEAD-LETTERED\tERROR")
		for _, t := range r.GetTargetStatus() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(t.GetDc()), when(t.GetAppliedAt()), when(t.GetDeadLetteredAt()),
				orDash(truncate(cell(t.GetError()), maxErrorWidth)))
		}
		tw.Flush()
	}
	_, err := w.Write(b.Bytes())
	return err
}

// renderDeadLetters writes one row per dead letter and a count line.
func renderDeadLetters(w io.Writer, resp *drplanev1.ListDeadLettersResponse) error {
	var b bytes.Buffer
	if len(resp.GetDeadLetters()) == 0 {
		b.WriteString("no dead letters\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "DC\tSEQ\tTIME\tORIGIN\tREQUEST\tSHARD\tERROR")
	var last uint64
	for _, d := range resp.GetDeadLetters() {
		shard := "-"
		if d.GetKeyspace() != "" {
			shard = fmt.Sprintf("%s/%d", cell(d.GetKeyspace()), d.GetShard())
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", orDash(cell(d.GetDc())), d.GetSequence(), when(d.GetTime()),
			orDash(cell(d.GetOriginDc())), orDash(cell(d.GetRequestId())), shard, orDash(truncate(cell(d.GetError()), maxErrorWidth)))
		last = d.GetSequence()
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d shown, %d in the dead-letter streams", len(resp.GetDeadLetters()), resp.GetTotal())
	if resp.GetMore() {
		fmt.Fprintf(&b, "; more: --after %d", last)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// renderRetried writes one row per dead letter retried and a count line.
func renderRetried(w io.Writer, resp *drplanev1.RetryDeadLettersResponse) error {
	var b bytes.Buffer
	if len(resp.GetResults()) == 0 {
		b.WriteString("no dead letters to retry\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "SEQ\tORIGIN\tREQUEST\tRESULT")
	for _, r := range resp.GetResults() {
		var result string
		switch {
		case r.GetReplaySequence() > 0 && r.GetError() == "":
			result = fmt.Sprintf("put back (inbound seq %d)", r.GetReplaySequence())
		case r.GetReplaySequence() > 0:
			result = fmt.Sprintf("put back (inbound seq %d); %s", r.GetReplaySequence(), cell(r.GetError()))
		default:
			result = "FAILED: " + cell(r.GetError())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.GetSequence(), orDash(cell(r.GetOriginDc())), orDash(cell(r.GetRequestId())), result)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d retried, %d failed", resp.GetRetried(), resp.GetFailed())
	if resp.GetMore() {
		b.WriteString("; more dead letters remain: run again")
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
