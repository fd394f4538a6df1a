package capture

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Errors of the capture.
var (
	// ErrNoColumnNames means a wanted table's rows came without column
	// names: the master does not run with binlog_row_metadata=FULL.
	ErrNoColumnNames = errors.New("capture: binlog carries no column names (set binlog_row_metadata=FULL on every instance)")
	// ErrStream means the binlog stream broke or could not start.
	ErrStream = errors.New("capture: binlog stream")
	// ErrBadEvent means an event could not be interpreted.
	ErrBadEvent = errors.New("capture: unexpected binlog event")
)

// SkipReplicationFlag is LOG_EVENT_SKIP_REPLICATION_F, the event header
// flag of every event of a transaction committed with
// skip_replication=1.
const SkipReplicationFlag uint16 = 0x8000

// Skip says why a transaction ships nothing.
type Skip string

// Reasons a whole transaction is skipped.
const (
	// SkipNone: the transaction's rows are shipped (it may still have none
	// to ship when every row belongs to a table outside the filter).
	SkipNone Skip = ""
	// SkipLoop: a collector applied it (skip_replication flag).
	SkipLoop Skip = "loop"
	// SkipDDL: a DDL statement.
	SkipDDL Skip = "ddl"
)

// Txn is one committed transaction read from the binlog.
type Txn struct {
	// GTID is the transaction's MariaDB GTID (domain-server-seq).
	GTID string
	// Position is the GTID position after the transaction: where a stream
	// resumes to continue after it.
	Position string
	// CommitTime is when the master wrote the commit (whole seconds: the
	// binlog's resolution).
	CommitTime time.Time
	// CapturedAt is when the commit was read.
	CapturedAt time.Time
	Skip       Skip
	// Rows are the changed rows of tables the filter accepted, in binlog
	// order.
	Rows []Row
	// Unmapped counts the rows of tables the filter rejected.
	Unmapped int
}

// Row is one changed row: its table, the operation, its primary key and
// both images (Before for UPDATE and DELETE, After for INSERT and UPDATE).
// Key holds the row's primary key columns as they were before the change
// (after it for an INSERT), or the whole image when the table has no
// primary key.
type Row struct {
	Schema, Table string
	Op            drplanev1.RowOp
	Key           []*drplanev1.Column
	Before, After []*drplanev1.Column
}

// assembler turns binlog events into transactions.
type assembler struct {
	filter func(schema, table string) bool
	now    func() time.Time
	// discarded is told about a transaction that a new one cut off before
	// its commit event (an XA transaction, or a stream that skipped).
	discarded func(gtid string, rows int)

	open bool
	txn  Txn
	// standalone marks a GTID group of one statement (DDL) without XID.
	standalone bool
	// metas caches the converted table maps of the open transaction.
	metas map[*replication.TableMapEvent]*tableMeta
}

func newAssembler(filter func(schema, table string) bool, now func() time.Time, discarded func(string, int)) *assembler {
	return &assembler{filter: filter, now: now, discarded: discarded, metas: map[*replication.TableMapEvent]*tableMeta{}}
}

// reset drops a partly received transaction.
func (a *assembler) reset() {
	a.open, a.standalone = false, false
	a.txn = Txn{}
	clear(a.metas)
}

// feed takes the next event and returns the transaction it completes, if
// any.
func (a *assembler) feed(ev *replication.BinlogEvent) (*Txn, error) {
	loop := ev.Header.Flags&SkipReplicationFlag != 0
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDEvent:
		if a.open && a.discarded != nil {
			a.discarded(a.txn.GTID, len(a.txn.Rows))
		}
		a.reset()
		a.open = true
		a.standalone = e.IsStandalone()
		a.txn.GTID = e.GTID.String()
		if loop {
			a.txn.Skip = SkipLoop
		}
	case *replication.TableMapEvent:
		if a.open && loop {
			a.txn.Skip = SkipLoop
		}
	case *replication.RowsEvent:
		if !a.open {
			return nil, nil
		}
		if loop {
			a.txn.Skip = SkipLoop
		}
		if a.txn.Skip == SkipLoop {
			return nil, nil
		}
		return nil, a.rows(e)
	case *replication.XIDEvent:
		if !a.open {
			return nil, nil
		}
		return a.finish(ev, e.GSet, loop)
	case *replication.QueryEvent:
		if !a.open {
			return nil, nil
		}
		switch q := string(e.Query); {
		case q == "BEGIN":
		case q == "COMMIT":
			// The end of a transaction on non-transactional tables.
			return a.finish(ev, e.GSet, loop)
		case a.standalone:
			if a.txn.Skip == SkipNone {
				a.txn.Skip = SkipDDL
			}
			return a.finish(ev, e.GSet, loop)
		}
	}
	return nil, nil
}

// rows converts a rows event into the open transaction.
func (a *assembler) rows(e *replication.RowsEvent) error {
	tm := e.Table
	if tm == nil {
		return ErrBadEvent
	}
	if !a.filter(string(tm.Schema), string(tm.Table)) {
		n := len(e.Rows)
		if e.Type() == replication.EnumRowsEventTypeUpdate {
			n /= 2
		}
		a.txn.Unmapped += n
		return nil
	}
	meta, ok := a.metas[tm]
	if !ok {
		var err error
		if meta, err = newTableMeta(tm); err != nil {
			return err
		}
		a.metas[tm] = meta
	}
	skipped := func(i int) []int {
		if i < len(e.SkippedColumns) {
			return e.SkippedColumns[i]
		}
		return nil
	}
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		for i, r := range e.Rows {
			after := meta.columns(r, skipped(i))
			a.add(meta, drplanev1.RowOp_ROW_OP_INSERT, meta.key(after), nil, after)
		}
	case replication.EnumRowsEventTypeDelete:
		for i, r := range e.Rows {
			before := meta.columns(r, skipped(i))
			a.add(meta, drplanev1.RowOp_ROW_OP_DELETE, meta.key(before), before, nil)
		}
	case replication.EnumRowsEventTypeUpdate:
		for i := 0; i+1 < len(e.Rows); i += 2 {
			before := meta.columns(e.Rows[i], skipped(i))
			after := meta.columns(e.Rows[i+1], skipped(i+1))
			a.add(meta, drplanev1.RowOp_ROW_OP_UPDATE, meta.key(before), before, after)
		}
	default:
		return ErrBadEvent
	}
	return nil
}

func (a *assembler) add(m *tableMeta, op drplanev1.RowOp, key, before, after []*drplanev1.Column) {
	a.txn.Rows = append(a.txn.Rows, Row{Schema: m.schema, Table: m.table, Op: op, Key: key, Before: before, After: after})
}

// finish closes the open transaction at its commit event.
func (a *assembler) finish(ev *replication.BinlogEvent, pos mysql.GTIDSet, loop bool) (*Txn, error) {
	if pos == nil {
		return nil, fmt.Errorf("%w: commit of %s without a GTID position", ErrBadEvent, a.txn.GTID)
	}
	txn := a.txn
	if loop {
		txn.Skip = SkipLoop
	}
	if txn.Skip == SkipLoop {
		txn.Rows, txn.Unmapped = nil, 0
	}
	txn.Position = pos.String()
	txn.CommitTime = time.Unix(int64(ev.Header.Timestamp), 0).UTC()
	txn.CapturedAt = a.now()
	a.reset()
	return &txn, nil
}
