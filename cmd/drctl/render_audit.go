package main

import (
	"bytes"
	"fmt"
	"io"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// renderAudit writes one row per audit event, a count line, and the next
// page token when more events match:
//
//	TIME                  ACTOR            ACTION              TARGET      OUTCOME  ERROR
//	2025-03-01 12:03:00Z  token:dashboard  switchover.request  dc-b1/main  DENIED   PERMISSION_DENIED: …
//
//	1 of 3 events; next page: --page-token T
func renderAudit(w io.Writer, resp *drplanev1.SearchAuditResponse) error {
	var b bytes.Buffer
	if len(resp.GetEvents()) == 0 {
		b.WriteString("no audit events found\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tOUTCOME\tERROR")
	for _, e := range resp.GetEvents() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", when(e.GetTime()), orDash(cell(e.GetActor())), orDash(cell(e.GetAction())),
			orDash(cell(e.GetTarget())), orDash(cell(e.GetOutcome())), orDash(truncate(cell(e.GetError()), maxErrorWidth)))
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n%d of %d events", len(resp.GetEvents()), resp.GetTotal())
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(&b, "; next page: --page-token %s", t)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
