package repair

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

// ErrRefused means the repair was refused; the error text says why.
var ErrRefused = errors.New("repair: refused")

// Mode says whether deposed masters with errant transactions are rewound.
type Mode string

// Modes.
const (
	// ModeAuto rewinds them when Judge finds it safe.
	ModeAuto Mode = "auto"
	// ModeOff quarantines every instance with errant transactions.
	ModeOff Mode = "off"
)

// State is a server's @@gtid_binlog_state: the last GTID of each (domain,
// server id) pair in its binlog.
type State []gtid.GTID

// ParseState parses a gtid_binlog_state such as "0-1-100,0-2-130".
func ParseState(s string) (State, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return State{}, nil
	}
	var out State
	for _, part := range strings.Split(s, ",") {
		g, err := gtid.Parse(part)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Domain != out[j].Domain {
			return out[i].Domain < out[j].Domain
		}
		return out[i].ServerID < out[j].ServerID
	})
	return out, nil
}

// last returns the state's GTID of (domain, server).
func (st State) last(domain, server uint32) (gtid.GTID, bool) {
	for _, g := range st {
		if g.Domain == domain && g.ServerID == server {
			return g, true
		}
	}
	return gtid.GTID{}, false
}

// Split compares an instance's binlog state with the master's. Errant are
// the instance's last GTIDs of the pairs the master lacks or has less of;
// resume is, per domain, the instance's most advanced GTID that the master
// has: where the instance's binlog parts from the master's (its
// gtid_slave_pos once the errant tail is undone).
func Split(own, master State) (errant []gtid.GTID, resume gtid.Pos) {
	byDomain := map[uint32]gtid.GTID{}
	keep := func(g gtid.GTID) {
		if cur, ok := byDomain[g.Domain]; !ok || g.Seq > cur.Seq {
			byDomain[g.Domain] = g
		}
	}
	for _, g := range own {
		mg, ok := master.last(g.Domain, g.ServerID)
		switch {
		case !ok:
			errant = append(errant, g)
		case g.Seq > mg.Seq:
			// Both hold the pair up to the master's last of it.
			errant = append(errant, g)
			keep(mg)
		default:
			keep(g)
		}
	}
	for _, g := range byDomain {
		resume = append(resume, g)
	}
	sort.Slice(resume, func(i, j int) bool { return resume[i].Domain < resume[j].Domain })
	return errant, resume
}

// Txn is one transaction read from the instance's binlog past resume.
type Txn struct {
	GTID gtid.GTID
	// At is the GTID event's timestamp (when the transaction was written
	// to the binlog, to the second).
	At time.Time
	// Trans is set for a transactional event group ("trans"), DDL for
	// "ddl".
	Trans, DDL bool
	// Other names the events in the group that are not row events
	// (Table_map, Write/Update/Delete_rows, Annotate_rows) or its Xid.
	Other []string
	// MultiEvent is set when a statement of it logged several rows events
	// (an INSERT … ON DUPLICATE KEY UPDATE that both inserts and updates,
	// or rows past binlog_row_event_max_size): mariadb-binlog --flashback
	// (10.11) undoes only the last of them, measured.
	MultiEvent bool
}

// SemiSync is what the instance says of its semi-sync settings.
type SemiSync struct {
	// WaitNoSlave is rpl_semi_sync_master_wait_no_slave.
	WaitNoSlave bool
	// Timeout is rpl_semi_sync_master_timeout.
	Timeout time.Duration
	// NoTx is Rpl_semi_sync_master_no_tx: commits not acknowledged by a
	// replica (killed while waiting, timed out or asynchronous), since the
	// server started.
	NoTx int64
}

// Evidence is what Judge decides on.
type Evidence struct {
	Mode Mode
	// ServerID is the instance's server_id.
	ServerID uint32
	// Deposed is the last failover record naming the instance as its old
	// master; nil when there is none.
	Deposed *state.FailoverRecord
	// Prior is the instance's last repair record; nil when there is none.
	Prior *state.RepairRecord
	// Errant and Resume are Split's answer.
	Errant []gtid.GTID
	Resume gtid.Pos
	// Others are the binlog states of the cluster's other instances that
	// could be read, by name (the master included).
	Others   map[string]State
	SemiSync SemiSync
	// Txns are the transactions read past Resume; Check only.
	Txns []Txn
	// Now is when the instance had been fenced by (the repair's own fence
	// came first); Margin allows for the clocks of the agent and the
	// instance and the binlog's one-second timestamps.
	Now    time.Time
	Margin time.Duration
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// Precheck is the part of Judge that needs no binlog: it returns nil when
// the errant transactions may be read and checked, else why not
// (ErrRefused).
func Precheck(ev Evidence) error {
	d := ev.Deposed
	switch {
	case ev.Mode != ModeAuto:
		return refuse("repair is off (repair.mode %q)", ev.Mode)
	case d == nil:
		return refuse("no failover record names it as the deposed master: its errant transactions are unexplained")
	case d.Kind != state.KindFailover:
		return refuse("it was deposed by %s %s, which leaves no errant transactions: these are unexplained", strings.ToLower(string(d.Kind)), d.ID)
	case d.Outcome != state.OutcomeSucceeded:
		return refuse("the failover that deposed it (%s) ended %s", d.ID, d.Outcome)
	case d.RPOTransactions < 0:
		return refuse("the failover that deposed it (%s) could not count what was lost", d.ID)
	case d.RPOTransactions > 0:
		return refuse("the failover that deposed it (%s) lost %d transactions (%s): they may have been acknowledged", d.ID, d.RPOTransactions, d.LostGTIDs)
	case ev.Prior != nil && ev.Prior.State == state.RepairRewinding && ev.Prior.FailoverID == d.ID:
		return refuse("an earlier repair began to rewind it at %s and did not finish: it is half rewound", ev.Prior.At.UTC().Format(time.RFC3339))
	case !ev.SemiSync.WaitNoSlave:
		return refuse("rpl_semi_sync_master_wait_no_slave is OFF: without a replica it committed without waiting")
	case ev.SemiSync.Timeout <= ev.Margin:
		return refuse("rpl_semi_sync_master_timeout %s is not above the clock margin %s", ev.SemiSync.Timeout, ev.Margin)
	}
	for _, g := range ev.Errant {
		if g.ServerID != ev.ServerID {
			return refuse("errant GTID %s was written by server id %d, not by this instance (%d)", g, g.ServerID, ev.ServerID)
		}
		if _, ok := ev.Resume.Seq(g.Domain); !ok {
			return refuse("the master has none of its transactions in domain %d", g.Domain)
		}
	}
	names := make([]string, 0, len(ev.Others))
	for n := range ev.Others {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, g := range ev.Errant {
			from, _ := ev.Resume.Seq(g.Domain)
			if og, ok := ev.Others[n].last(g.Domain, g.ServerID); ok && og.Seq > from {
				return refuse("%s holds errant transaction %s: it was received, so it may have been acknowledged", n, og)
			}
		}
	}
	return nil
}

// Check is the rest of Judge, on the transactions read past Resume: they
// must be exactly the errant ones, undoable, and too recent to have been
// acknowledged asynchronously.
func Check(ev Evidence) error {
	if len(ev.Txns) == 0 {
		return refuse("its binlog past %s shows none of the errant transactions", ev.Resume)
	}
	next := map[uint32]uint64{}
	for _, g := range ev.Resume {
		next[g.Domain] = g.Seq + 1
	}
	earliest := ev.Txns[0]
	for _, t := range ev.Txns {
		g := t.GTID
		switch want, ok := next[g.Domain]; {
		case g.ServerID != ev.ServerID:
			return refuse("transaction %s past the fork was written by server id %d, not by this instance", g, g.ServerID)
		case !ok || g.Seq != want:
			return refuse("transaction %s past the fork is out of sequence (expected %d-%d-%d)", g, g.Domain, ev.ServerID, want)
		case t.DDL || !t.Trans:
			return refuse("transaction %s is DDL or not transactional: flashback cannot undo it", g)
		case len(t.Other) > 0:
			return refuse("transaction %s holds %s events: flashback undoes row events only", g, strings.Join(t.Other, ", "))
		case t.MultiEvent:
			return refuse("transaction %s has a statement logged as several rows events, which flashback does not undo correctly", g)
		}
		next[g.Domain] = g.Seq + 1
		if t.At.Before(earliest.At) {
			earliest = t
		}
	}
	for _, g := range ev.Errant {
		if next[g.Domain] != g.Seq+1 {
			return refuse("its binlog past %s ends at %d-%d-%d, not at its errant GTID %s", ev.Resume, g.Domain, g.ServerID, next[g.Domain]-1, g)
		}
	}
	if age := ev.Now.Sub(earliest.At); age >= ev.SemiSync.Timeout-ev.Margin {
		return refuse("transaction %s was written %s before it was fenced, past rpl_semi_sync_master_timeout %s less %s: it may have timed out and been acknowledged asynchronously",
			earliest.GTID, age.Round(time.Second), ev.SemiSync.Timeout, ev.Margin)
	}
	if ev.SemiSync.NoTx < int64(len(ev.Txns)) {
		return refuse("%d errant transactions but only %d commits waited in vain for an ack (Rpl_semi_sync_master_no_tx): some were not semi-sync commits",
			len(ev.Txns), ev.SemiSync.NoTx)
	}
	return nil
}

// Ranges renders the errant transactions of ev as GTID ranges per domain
// ("0-1-101..0-1-105").
func Ranges(resume gtid.Pos, errant []gtid.GTID) string {
	parts := make([]string, 0, len(errant))
	for _, g := range errant {
		from, _ := resume.Seq(g.Domain)
		first := gtid.GTID{Domain: g.Domain, ServerID: g.ServerID, Seq: from + 1}
		if first.Seq == g.Seq {
			parts = append(parts, g.String())
			continue
		}
		parts = append(parts, first.String()+".."+g.String())
	}
	return strings.Join(parts, ",")
}
