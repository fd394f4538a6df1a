package apply

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/drplane/drplane/pkg/gtid"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// RowPositionTable is the table, in every keyspace database, that records
// for each row a request changed the source position of the last change
// applied to it: the ordering guard. A change older than the recorded one
// from the same origin and GTID domain (a dead letter retried after newer
// changes to its rows, a request republished late) is skipped for that
// row, so it cannot roll the row back; it is counted and logged.
const RowPositionTable = "drplane_row_position"

// OriginPositionTable holds, per origin and GTID domain, the highest
// sequence recorded in RowPositionTable: a change above it cannot be older
// than any row's, so its rows' positions need not be read.
const OriginPositionTable = "drplane_origin_position"

// rowPositionDDL creates the ordering guard's tables in a database.
func rowPositionDDL(db string) []string {
	return []string{"CREATE TABLE IF NOT EXISTS " + qualify(db, RowPositionTable) + ` (
  row_key VARBINARY(255) NOT NULL PRIMARY KEY,
  origin_dc VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  gtid_domain INT UNSIGNED NOT NULL,
  gtid_seq BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB`, "CREATE TABLE IF NOT EXISTS " + qualify(db, OriginPositionTable) + ` (
  origin_dc VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  gtid_domain INT UNSIGNED NOT NULL,
  max_seq BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (origin_dc, gtid_domain)
) ENGINE=InnoDB`}
}

// position is where a change comes from: its origin DC and GTID. ok is
// false when the GTID does not parse; such a change is never found older.
type position struct {
	origin string
	domain uint32
	seq    uint64
	ok     bool
}

func positionOf(ev *drplanev1.ChangeEvent) position {
	g, err := gtid.Parse(ev.GetGtid())
	if err != nil {
		return position{}
	}
	return position{origin: ev.GetOriginDc(), domain: g.Domain, seq: g.Seq, ok: true}
}

// before reports whether p is known to be older than q: same origin and
// GTID domain, a lower sequence. Changes of different origins (or domains)
// are not ordered here: a shard changes origin only through a handoff,
// whose barrier orders them.
func (p position) before(q position) bool {
	return p.ok && q.ok && p.origin == q.origin && p.domain == q.domain && p.seq < q.seq
}

// maxRowKey bounds a row key: a longer encoding is replaced by its hash.
const maxRowKey = 255

// rowKey identifies a row of a table by its primary key: the table name and
// the key columns' names and values, encoded so that integer keys keep
// their order (the guard's table is then written in about the order of the
// data's), or 0xFF and the SHA-256 of that when it is longer than 255
// bytes (no table name starts with 0xFF). Nil without a key.
func rowKey(table string, key []*drplanev1.Column) []byte {
	if len(key) == 0 {
		return nil
	}
	b := append(make([]byte, 0, 64), table...)
	b = append(b, 0)
	for _, c := range key {
		b = append(b, c.GetName()...)
		b = append(b, 0)
		switch k := c.GetValue().GetKind().(type) {
		case *drplanev1.Value_Int:
			b = append(b, 'i')
			b = binary.BigEndian.AppendUint64(b, uint64(k.Int)^(1<<63)) //nolint:gosec // the bits, sign flipped
		case *drplanev1.Value_Uint:
			b = append(b, 'u')
			b = binary.BigEndian.AppendUint64(b, k.Uint)
		case *drplanev1.Value_Float:
			b = append(b, 'f')
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(k.Float))
		case *drplanev1.Value_Text:
			b = append(b, 't')
			b = binary.AppendUvarint(b, uint64(len(k.Text)))
			b = append(b, k.Text...)
		case *drplanev1.Value_Raw:
			b = append(b, 'r')
			b = binary.AppendUvarint(b, uint64(len(k.Raw)))
			b = append(b, k.Raw...)
		default:
			b = append(b, 'n')
		}
	}
	if len(b) > maxRowKey {
		sum := sha256.Sum256(b)
		return append([]byte{0xFF}, sum[:]...)
	}
	return b
}

// stream is one origin's GTID domain.
type stream struct {
	origin string
	domain uint32
}

// guardOps drops the ops older than the recorded position of their row
// and records the positions of the others, in tx. It returns the ops to
// run and, per item, how many of its row changes were dropped. Only the
// rows of changes at or below their stream's highest recorded sequence
// are read (a late change); the others cannot be older than any row's.
func guardOps(ctx context.Context, tx *sql.Tx, ops []rowOp) ([]rowOp, map[*item]int, error) {
	streams := map[string]map[stream]uint64{} // db → stream → highest sequence in this batch
	var dbs []string
	for _, op := range ops {
		if op.key == nil || !op.pos.ok {
			continue
		}
		if streams[op.db] == nil {
			streams[op.db] = map[stream]uint64{}
			dbs = append(dbs, op.db)
		}
		s := stream{op.pos.origin, op.pos.domain}
		streams[op.db][s] = max(streams[op.db][s], op.pos.seq)
	}
	if len(dbs) == 0 {
		return ops, nil, nil
	}
	current := map[string]position{}
	for _, db := range dbs {
		recorded, err := readStreams(ctx, tx, db, streams[db])
		if err != nil {
			return nil, nil, err
		}
		var late [][]byte
		for _, op := range ops {
			if op.db == db && op.key != nil && op.pos.ok && op.pos.seq <= recorded[stream{op.pos.origin, op.pos.domain}] {
				late = append(late, op.key)
			}
		}
		if err := readPositions(ctx, tx, db, late, current); err != nil {
			return nil, nil, err
		}
	}
	var stale map[*item]int
	kept := ops[:0:0]
	for _, op := range ops {
		if op.key == nil || !op.pos.ok {
			kept = append(kept, op)
			continue
		}
		k := op.db + "\x00" + string(op.key)
		if cur, ok := current[k]; ok && op.pos.before(cur) {
			if stale == nil {
				stale = map[*item]int{}
			}
			stale[op.it]++
			continue
		}
		current[k] = op.pos
		kept = append(kept, op)
	}
	byDB := map[string][]rowOp{}
	for _, op := range kept {
		if op.key != nil && op.pos.ok {
			byDB[op.db] = append(byDB[op.db], op)
		}
	}
	for _, db := range dbs {
		if err := writePositions(ctx, tx, db, lastPerKey(byDB[db])); err != nil {
			return nil, nil, err
		}
		if err := writeStreams(ctx, tx, db, streams[db]); err != nil {
			return nil, nil, err
		}
	}
	return kept, stale, nil
}

// readStreams reads, locking them, the highest recorded sequences of the
// streams in db (0 for a stream never recorded).
func readStreams(ctx context.Context, tx *sql.Tx, db string, streams map[stream]uint64) (map[stream]uint64, error) {
	table := qualify(db, OriginPositionTable)
	args := make([]any, 0, 2*len(streams))
	for s := range streams {
		args = append(args, s.origin, s.domain)
	}
	rows, err := tx.QueryContext(ctx, "SELECT origin_dc, gtid_domain, max_seq FROM "+table+" WHERE (origin_dc, gtid_domain) IN ("+
		strings.TrimSuffix(strings.Repeat("(?,?),", len(streams)), ",")+") FOR UPDATE", args...)
	if err != nil {
		return nil, fmt.Errorf("read origin positions in %s: %w", table, err)
	}
	defer rows.Close()
	out := map[stream]uint64{}
	for rows.Next() {
		var (
			s   stream
			seq uint64
		)
		if err := rows.Scan(&s.origin, &s.domain, &seq); err != nil {
			return nil, fmt.Errorf("read origin positions in %s: %w", table, err)
		}
		out[s] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read origin positions in %s: %w", table, err)
	}
	return out, nil
}

// writeStreams raises the recorded highest sequences of the streams in db.
func writeStreams(ctx context.Context, tx *sql.Tx, db string, streams map[stream]uint64) error {
	table := qualify(db, OriginPositionTable)
	args := make([]any, 0, 3*len(streams))
	for s, seq := range streams {
		args = append(args, s.origin, s.domain, seq)
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (origin_dc, gtid_domain, max_seq) VALUES "+
		strings.TrimSuffix(strings.Repeat("(?,?,?),", len(streams)), ",")+
		" ON DUPLICATE KEY UPDATE max_seq = GREATEST(max_seq, VALUES(max_seq))", args...)
	if err != nil {
		return fmt.Errorf("record origin positions in %s: %w", table, err)
	}
	return nil
}

// lastPerKey keeps the last op of each row key, in order.
func lastPerKey(ops []rowOp) []rowOp {
	idx := map[string]int{}
	var out []rowOp
	for _, op := range ops {
		if i, ok := idx[string(op.key)]; ok {
			out[i] = op
			continue
		}
		idx[string(op.key)] = len(out)
		out = append(out, op)
	}
	return out
}

// positionsPerStmt is how many row keys one guard statement carries.
const positionsPerStmt = 1000

// readPositions reads, locking them, the recorded positions of keys in db
// into current (by db+key).
func readPositions(ctx context.Context, tx *sql.Tx, db string, keys [][]byte, current map[string]position) error {
	table := qualify(db, RowPositionTable)
	for start := 0; start < len(keys); start += positionsPerStmt {
		chunk := keys[start:min(len(keys), start+positionsPerStmt)]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		rows, err := tx.QueryContext(ctx, "SELECT row_key, origin_dc, gtid_domain, gtid_seq FROM "+table+
			" WHERE row_key IN ("+strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")+") FOR UPDATE", args...)
		if err != nil {
			return fmt.Errorf("read row positions in %s: %w", table, err)
		}
		for rows.Next() {
			var (
				key []byte
				p   = position{ok: true}
			)
			if err := rows.Scan(&key, &p.origin, &p.domain, &p.seq); err != nil {
				_ = rows.Close()
				return fmt.Errorf("read row positions in %s: %w", table, err)
			}
			current[db+"\x00"+string(key)] = p
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return fmt.Errorf("read row positions in %s: %w", table, err)
		}
	}
	return nil
}

// writePositions records the positions of ops (one per row key) in db.
func writePositions(ctx context.Context, tx *sql.Tx, db string, ops []rowOp) error {
	table := qualify(db, RowPositionTable)
	for start := 0; start < len(ops); start += positionsPerStmt {
		chunk := ops[start:min(len(ops), start+positionsPerStmt)]
		args := make([]any, 0, 4*len(chunk))
		for _, op := range chunk {
			args = append(args, op.key, op.pos.origin, op.pos.domain, op.pos.seq)
		}
		query := "INSERT INTO " + table + " (row_key, origin_dc, gtid_domain, gtid_seq) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?,?,?,?),", len(chunk)), ",") +
			" ON DUPLICATE KEY UPDATE origin_dc=VALUES(origin_dc), gtid_domain=VALUES(gtid_domain), gtid_seq=VALUES(gtid_seq)"
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("record row positions in %s: %w", table, err)
		}
	}
	return nil
}
