package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// maxErrorWidth is how many characters of an instance's last error the
// status table shows.
const maxErrorWidth = 60

// renderJSON writes m as indented JSON with proto field names and every
// field present, the same shape the REST API returns. protojson's own
// spacing varies on purpose; re-indenting it makes the output stable.
func renderJSON(w io.Writer, m proto.Message) error {
	data, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return fmt.Errorf("indent %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	b.WriteByte('\n')
	_, err = w.Write(b.Bytes())
	return err
}

// renderStatus writes a status report: per DC a header line, then per
// cluster a line with its health and master followed by one row per
// instance, then the DC's service processes.
func renderStatus(w io.Writer, resp *drplanev1.GetStatusResponse) error {
	var b bytes.Buffer
	if len(resp.GetDcs()) == 0 {
		b.WriteString("no DCs\n")
	}
	for i, dc := range resp.GetDcs() {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "DC %s (city %s) %s\n", dc.GetName(), orDash(dc.GetCity()), dcState(dc.GetState()))
		writeDurability(&b, dc.GetDurability())
		if len(dc.GetClusters()) == 0 {
			b.WriteString("  no MySQL clusters\n")
		}
		for _, cl := range dc.GetClusters() {
			writeCluster(&b, cl)
		}
		writeServices(&b, dc.GetServices())
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeDurability writes the DC's durability check: one line when it
// passes, else a WARNING line and one line per weak or unknown setting.
func writeDurability(b *bytes.Buffer, d *drplanev1.Durability) {
	if d == nil {
		return
	}
	if d.GetOk() {
		fmt.Fprintf(b, "  durability: OK (MySQL sync_binlog=1, innodb_flush_log_at_trx_commit=1, semi-sync AFTER_SYNC; NATS sync %s)\n",
			cell(d.GetNatsSync()))
		return
	}
	fmt.Fprintf(b, "  durability: WARNING, %d setting(s) weaker than wanted or not known\n", len(d.GetWarnings()))
	for _, w := range d.GetWarnings() {
		v := w.GetValue()
		if v == "" {
			v = "?"
		}
		fmt.Fprintf(b, "    %s: %s=%s, want %s: %s\n", cell(w.GetSubject()), cell(w.GetSetting()), cell(v), cell(w.GetWant()), cell(w.GetDetail()))
	}
}

// writeCluster writes the cluster line ("  cluster NAME: HEALTH H, master
// M") and its instance table.
func writeCluster(b *bytes.Buffer, cl *drplanev1.ClusterStatus) {
	fmt.Fprintf(b, "  cluster %s: HEALTH %s, master %s\n", cell(cl.GetName()), orDash(cell(cl.GetHealth())), orNone(cell(cl.GetMaster())))
	if h := cl.GetFailoverHold(); h != nil {
		until := "released by an operator or when its cause goes"
		if h.GetUntil() != nil {
			until = "until " + h.GetUntil().AsTime().UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(b, "    failover held: %s, %s (%s)\n", cell(h.GetReason()), until, cell(h.GetDetail()))
	}
	for _, in := range cl.GetInstances() {
		if q := in.GetQuarantine(); q != "" {
			fmt.Fprintf(b, "    quarantined %s: %s\n", cell(in.GetName()), cell(q))
		}
	}
	if len(cl.GetInstances()) == 0 {
		b.WriteString("    no instances observed\n")
		return
	}
	tw := newTable(b)
	fmt.Fprintln(tw, "    CLUSTER\tINSTANCE\tADDR\tROLE\tRW\tREACHABLE\tIO/SQL\tLAG\tGTID\tSEMI-SYNC\tERROR")
	for _, in := range cl.GetInstances() {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(cl.GetName()), cell(in.GetName()), orDash(cell(in.GetAddr())), role(in.GetRole()),
			rw(in), yesNo(in.GetReachable()), threads(in), lag(in),
			orDash(cell(in.GetGtidBinlogPos())), semiSync(in), truncate(cell(in.GetLastError()), maxErrorWidth))
	}
	tw.Flush()
}

// writeServices writes the DC's service processes.
func writeServices(b *bytes.Buffer, svcs []*drplanev1.ServiceInstance) {
	if len(svcs) == 0 {
		b.WriteString("  no services registered\n")
		return
	}
	tw := newTable(b)
	fmt.Fprintln(tw, "  SERVICE\tID\tHEALTH ADDR\tVERSION\tNOTE")
	for _, s := range svcs {
		note := ""
		if !s.GetLogicImplemented() {
			note = "logic: not implemented yet"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", cell(s.GetName()), cell(s.GetId()), orDash(cell(s.GetAddr())), orDash(cell(s.GetVersion())), note)
	}
	tw.Flush()
}

// table aligns tab-separated cells into columns two spaces apart and
// writes the lines without trailing blanks.
type table struct {
	out *bytes.Buffer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(out *bytes.Buffer) *table {
	t := &table{out: out}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Write(p []byte) (int, error) { return t.tw.Write(p) }

// Flush aligns what was written and appends it to the output.
func (t *table) Flush() {
	_ = t.tw.Flush() // it writes to a bytes.Buffer, which cannot fail
	for line := range strings.Lines(t.buf.String()) {
		t.out.WriteString(strings.TrimRight(line, " \n"))
		t.out.WriteByte('\n')
	}
	t.buf.Reset()
}

// dcState is the state's name without its enum prefix, e.g. "ACTIVE".
func dcState(s drplanev1.DCState) string {
	return strings.TrimPrefix(s.String(), "DC_STATE_")
}

func role(r drplanev1.Role) string {
	switch r {
	case drplanev1.Role_ROLE_MASTER:
		return "master"
	case drplanev1.Role_ROLE_REPLICA:
		return "replica"
	case drplanev1.Role_ROLE_UNKNOWN:
		return "unknown"
	}
	return "-"
}

// rw is "writable" or "ro"; "-" for an unreachable instance, whose
// read_only value was not observed.
func rw(in *drplanev1.InstanceStatus) string {
	switch {
	case !in.GetReachable():
		return "-"
	case in.GetReadOnly():
		return "ro"
	}
	return "writable"
}

// threads is "IO/SQL" as Yes/No for a replica; "-/-" for a master or an
// unreachable instance.
func threads(in *drplanev1.InstanceStatus) string {
	if in.GetRole() == drplanev1.Role_ROLE_MASTER || !in.GetReachable() {
		return "-/-"
	}
	return capYesNo(in.GetIoRunning()) + "/" + capYesNo(in.GetSqlRunning())
}

// lag is Seconds_Behind_Master as "Ns", or "-" when the server reported
// none.
func lag(in *drplanev1.InstanceStatus) string {
	if in.SecondsBehindMaster == nil {
		return "-"
	}
	return fmt.Sprintf("%ds", in.GetSecondsBehindMaster())
}

// semiSync is "ON n clients"/"OFF" for a master, "-" otherwise.
func semiSync(in *drplanev1.InstanceStatus) string {
	if in.GetRole() != drplanev1.Role_ROLE_MASTER {
		return "-"
	}
	if !in.GetSemiSyncMaster() {
		return "OFF"
	}
	n := in.GetSemiSyncClients()
	if n == 1 {
		return "ON 1 client"
	}
	return fmt.Sprintf("ON %d clients", n)
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

func capYesNo(v bool) string {
	if v {
		return "Yes"
	}
	return "No"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cell makes s safe for one table cell: tabs and line breaks (which would
// break the columns) become spaces, and surrounding space is trimmed.
func cell(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r', '\v', '\f':
			return ' '
		}
		return r
	}, s))
}

// truncate shortens s to at most n characters, ending in "…" when cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimRight(string(r[:n-1]), " ") + "…"
}
