package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/protobuf/proto"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// DedupTable is the table, in every keyspace database, that records the
// requests applied in this DC.
const DedupTable = "drplane_applied"

// dedupDDL creates the dedup table in a database.
func dedupDDL(db string) string {
	return "CREATE TABLE IF NOT EXISTS " + qualify(db, DedupTable) + ` (
  origin_dc VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_id VARCHAR(191) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  gtid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (origin_dc, request_id)
) ENGINE=InnoDB`
}

// Limits of one statement: prepared statements take at most 65535
// placeholders, and the packet must stay well below max_allowed_packet.
const (
	maxPlaceholders = 65535
	maxStmtBytes    = 4 << 20
)

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func qualify(db, table string) string { return quoteIdent(db) + "." + quoteIdent(table) }

// opKind is what a statement does to rows.
type opKind int

const (
	opUpsert opKind = iota
	opDelete
)

// rowOp is one row's change by primary key: an upsert of cols (the after
// image) or a delete where cols (the key) equal vals.
type rowOp struct {
	kind  opKind
	table string // qualified
	cols  []string
	vals  []any
	size  int
	// The ordering guard's view: the database, the row's key (rowKey; nil
	// without a primary key), the change's source position and its request.
	db  string
	key []byte
	pos position
	it  *item
}

// signature groups ops that one statement can carry.
func (o *rowOp) signature() string {
	return fmt.Sprintf("%d|%s|%s", o.kind, o.table, strings.Join(o.cols, "\x00"))
}

func newOp(kind opKind, table string, cols []*drplanev1.Column) rowOp {
	op := rowOp{kind: kind, table: table, cols: make([]string, len(cols)), vals: make([]any, len(cols))}
	for i, c := range cols {
		op.cols[i] = c.GetName()
		op.vals[i], _ = sqlValue(c.GetValue()) // validated on decode
		op.size += len(c.GetName()) + valueSize(op.vals[i]) + 8
	}
	return op
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	}
	return 8
}

// rowOps turns one event's rows into ops, in order. An update that moves
// a row to another primary key deletes the old key first.
func rowOps(ev *drplanev1.ChangeEvent, db string) []rowOp {
	table := qualify(db, ev.GetTable())
	pos := positionOf(ev)
	ops := make([]rowOp, 0, len(ev.GetRows()))
	add := func(kind opKind, cols, key []*drplanev1.Column) {
		op := newOp(kind, table, cols)
		op.db, op.key, op.pos = db, rowKey(ev.GetTable(), key), pos
		ops = append(ops, op)
	}
	for _, rc := range ev.GetRows() {
		switch rc.GetOp() {
		case drplanev1.RowOp_ROW_OP_DELETE:
			add(opDelete, rc.GetKey(), rc.GetKey())
		case drplanev1.RowOp_ROW_OP_UPDATE:
			if old := movedKey(rc); old != nil {
				add(opDelete, old, old)
			}
			add(opUpsert, rc.GetAfter(), rc.GetKey())
		default:
			add(opUpsert, rc.GetAfter(), rc.GetKey())
		}
	}
	return ops
}

// movedKey returns the before image's key columns when an update changed
// the primary key, else nil.
func movedKey(rc *drplanev1.RowChange) []*drplanev1.Column {
	if len(rc.GetKey()) == 0 || len(rc.GetBefore()) == 0 {
		return nil
	}
	find := func(img []*drplanev1.Column, name string) *drplanev1.Column {
		for _, c := range img {
			if c.GetName() == name {
				return c
			}
		}
		return nil
	}
	old := make([]*drplanev1.Column, 0, len(rc.GetKey()))
	moved := false
	for _, k := range rc.GetKey() {
		b, a := find(rc.GetBefore(), k.GetName()), find(rc.GetAfter(), k.GetName())
		if b == nil || a == nil {
			return nil
		}
		if !proto.Equal(b.GetValue(), a.GetValue()) {
			moved = true
		}
		old = append(old, b)
	}
	if !moved {
		return nil
	}
	return old
}

// execOps runs ops in order, packing each run of consecutive ops with the
// same signature into as few statements as the limits allow. Within a
// multi-row upsert a later row of the same key wins, as in order.
func execOps(ctx context.Context, tx *sql.Tx, ops []rowOp) error {
	for start := 0; start < len(ops); {
		sig := ops[start].signature()
		end, bytes := start, 0
		perRow := len(ops[start].cols)
		for end < len(ops) && ops[end].signature() == sig &&
			(end-start+1)*perRow <= maxPlaceholders && (end == start || bytes+ops[end].size <= maxStmtBytes) {
			bytes += ops[end].size
			end++
		}
		query, args := statement(ops[start:end])
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("%s %s: %w", kindName(ops[start].kind), ops[start].table, err)
		}
		start = end
	}
	return nil
}

func kindName(k opKind) string {
	if k == opDelete {
		return "delete from"
	}
	return "upsert into"
}

// statement builds one statement for ops, which share a signature.
func statement(ops []rowOp) (string, []any) {
	first := ops[0]
	args := make([]any, 0, len(ops)*len(first.cols))
	var b strings.Builder
	cols := make([]string, len(first.cols))
	for i, c := range first.cols {
		cols[i] = quoteIdent(c)
	}
	switch first.kind {
	case opDelete:
		b.WriteString("DELETE FROM " + first.table + " WHERE ")
		if len(cols) == 1 {
			b.WriteString(cols[0] + " IN (")
			for i, op := range ops {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('?')
				args = append(args, op.vals[0])
			}
			b.WriteByte(')')
			break
		}
		cond := "(" + strings.Join(cols, "=? AND ") + "=?)"
		for i, op := range ops {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString(cond)
			args = append(args, op.vals...)
		}
	default:
		b.WriteString("INSERT INTO " + first.table + " (" + strings.Join(cols, ",") + ") VALUES ")
		tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
		for i, op := range ops {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(tuple)
			args = append(args, op.vals...)
		}
		b.WriteString(" ON DUPLICATE KEY UPDATE ")
		for i, c := range cols {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(c + "=VALUES(" + c + ")")
		}
	}
	return b.String(), args
}

// dedupRow is one request's row in a dedup table.
type dedupRow struct {
	it     *item
	origin string
	rid    string
	gtid   string
}

// markApplied inserts the dedup rows of one database's requests and sets
// fresh on the items whose row did not exist: those are applied now, the
// others were applied before. One request: INSERT IGNORE, zero rows
// affected means applied before. Several: multi-row INSERTs, which succeed
// as a whole in the common case; when one hits a duplicate key, the rows
// of the statements before it were inserted now (fresh), and for the rest
// the existing rows are looked up and only the others inserted.
func markApplied(ctx context.Context, tx *sql.Tx, db string, rows []dedupRow) error {
	table := qualify(db, DedupTable)
	if len(rows) == 1 {
		res, err := tx.ExecContext(ctx, "INSERT IGNORE INTO "+table+" (origin_dc, request_id, gtid) VALUES (?,?,?)",
			rows[0].origin, rows[0].rid, rows[0].gtid)
		if err != nil {
			return fmt.Errorf("dedup row in %s: %w", table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("dedup row in %s: %w", table, err)
		}
		rows[0].it.fresh = n == 1
		return nil
	}
	done, err := insertDedup(ctx, tx, table, rows)
	for _, r := range rows[:done] {
		r.it.fresh = true
	}
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1062 {
		return err
	}
	// Some were applied before: the failed statement was rolled back as a
	// whole, the transaction goes on. Only the rows from that statement on
	// are looked up: the earlier ones exist because they were inserted now.
	left := rows[done:]
	seen, err := existingDedup(ctx, tx, table, left)
	if err != nil {
		return err
	}
	var rest []dedupRow
	for _, r := range left {
		if !seen[r.origin+":"+r.rid] {
			rest = append(rest, r)
		}
	}
	if len(rest) > 0 {
		if _, err := insertDedup(ctx, tx, table, rest); err != nil {
			if errors.As(err, &me) && me.Number == 1062 {
				return fmt.Errorf("%w: dedup rows in %s written concurrently", errTransient, table)
			}
			return err
		}
	}
	for _, r := range rest {
		r.it.fresh = true
	}
	return nil
}

// dedupPerStmt is how many dedup rows one INSERT carries.
const dedupPerStmt = 1000

// insertDedup inserts rows in statements of dedupPerStmt and returns how
// many were inserted: on an error, rows[:n] are in (by the statements that
// succeeded) and the failed statement's rows are not.
func insertDedup(ctx context.Context, tx *sql.Tx, table string, rows []dedupRow) (int, error) {
	done := 0
	for done < len(rows) {
		n := min(len(rows)-done, dedupPerStmt)
		query := "INSERT INTO " + table + " (origin_dc, request_id, gtid) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?,?,?),", n), ",")
		args := make([]any, 0, 3*n)
		for _, r := range rows[done : done+n] {
			args = append(args, r.origin, r.rid, r.gtid)
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return done, fmt.Errorf("dedup rows in %s: %w", table, err)
		}
		done += n
	}
	return done, nil
}

// existingDedup returns which of rows' requests ("origin:request") already
// have a dedup row.
func existingDedup(ctx context.Context, tx *sql.Tx, table string, rows []dedupRow) (map[string]bool, error) {
	byOrigin := map[string][]any{}
	for _, r := range rows {
		byOrigin[r.origin] = append(byOrigin[r.origin], r.rid)
	}
	seen := map[string]bool{}
	for origin, rids := range byOrigin {
		query := "SELECT request_id FROM " + table + " WHERE origin_dc = ? AND request_id IN (" +
			strings.TrimSuffix(strings.Repeat("?,", len(rids)), ",") + ")"
		res, err := tx.QueryContext(ctx, query, append([]any{origin}, rids...)...)
		if err != nil {
			return nil, fmt.Errorf("read dedup rows in %s: %w", table, err)
		}
		for res.Next() {
			var rid string
			if err := res.Scan(&rid); err != nil {
				_ = res.Close()
				return nil, fmt.Errorf("read dedup rows in %s: %w", table, err)
			}
			seen[origin+":"+rid] = true
		}
		err = res.Err()
		_ = res.Close()
		if err != nil {
			return nil, fmt.Errorf("read dedup rows in %s: %w", table, err)
		}
	}
	return seen, nil
}
