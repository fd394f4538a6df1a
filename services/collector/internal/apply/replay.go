package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// The reapply side of the collector: an operator's "reapply" of a
// divergence entry (drctl divergence resolve --action reapply) leaves it
// REPLAYING with this DC, the shard's owner, as its target. The collector
// applies the entry's change to its master only if every row the change
// touches is still as the change found it at its origin (the before image
// for an update or a delete, no row for an insert), in one transaction that
// holds the rows' locks from the check to the commit; then the entry is
// REPLAYED. When a row differs — the owner wrote it since, newer data — or
// the shard is no longer this DC's, nothing is written and the entry goes
// CONFLICT with what differs. When every row already is as the change
// leaves it (a reapply committed before a crash, or the same data written
// since), the entry is REPLAYED with nothing written. The write is an
// ordinary binlogged transaction of this DC (not marked skip_replication),
// so its reship ships it to every other DC like any write of the owner.

// replayRetry is the pause before an entry whose reapply could not be
// decided (master or etcd unavailable, the shard frozen by a handoff) is
// tried again.
const replayRetry = time.Second

// Outcomes of the check of one row.
type rowVerdict int

const (
	// rowApply: the row is as the change found it.
	rowApply rowVerdict = iota
	// rowPresent: the row is as the change leaves it already.
	rowPresent
	// rowConflict: neither.
	rowConflict
)

// replays follows the divergence entries this DC is to reapply.
type replays struct {
	a  *Applier
	mu sync.Mutex
	// retry holds the keys of entries to try again.
	retry map[string]bool
}

func newReplays(a *Applier) *replays { return &replays{a: a, retry: map[string]bool{}} }

// mine reports whether an entry waits for this DC's reapply.
func (r *replays) mine(e divergence.Entry) bool {
	return e.State == divergence.Replaying && e.Resolution != nil && e.Resolution.Target == r.a.o.DC
}

// run reads and watches the entries until ctx ends, reapplying each one
// that is this DC's; undecided ones are tried again every replayRetry.
func (r *replays) run(ctx context.Context) error {
	st := r.a.o.Store
	prefix := st.Prefix("divergence")
	tick := time.NewTicker(replayRetry)
	defer tick.Stop()
	for ctx.Err() == nil {
		resp, err := st.Client().Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			retry.Sleep(ctx, replayRetry)
			continue
		}
		for _, kv := range resp.Kvs {
			r.handle(ctx, string(kv.Key), kv.Value, kv.ModRevision)
		}
		wch := st.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	watch:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break watch
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypePut {
						r.handle(ctx, string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision)
					}
				}
			case <-tick.C:
				r.again(ctx)
			case <-ctx.Done():
				return nil
			}
		}
		retry.Sleep(ctx, replayRetry)
	}
	return nil
}

// again reads the entries kept for a retry and handles them.
func (r *replays) again(ctx context.Context) {
	r.mu.Lock()
	keys := make([]string, 0, len(r.retry))
	for k := range r.retry {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	for _, k := range keys {
		resp, err := r.a.o.Store.Client().Get(ctx, k)
		if err != nil {
			return
		}
		if len(resp.Kvs) == 0 {
			r.done(k)
			continue
		}
		r.handle(ctx, k, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}
}

func (r *replays) done(key string) {
	r.mu.Lock()
	delete(r.retry, key)
	r.mu.Unlock()
}

// handle reapplies one entry if it is this DC's, and records the outcome.
func (r *replays) handle(ctx context.Context, key string, value []byte, rev int64) {
	var e divergence.Entry
	if json.Unmarshal(value, &e) != nil || !r.mine(e) {
		r.done(key)
		return
	}
	log := r.a.log.With().Str("divergence", e.ID()).Str("operation", e.Resolution.OperationID).Logger()
	detail, gtid, err := r.reapply(ctx, e)
	if err != nil {
		log.Warn().Err(err).Msg("reapply of a divergence entry not decided yet; retrying")
		r.mu.Lock()
		r.retry[key] = true
		r.mu.Unlock()
		return
	}
	out := e
	res := *e.Resolution
	out.Resolution = &res
	res.FinishedAt, res.Detail, res.GTID = r.a.o.Now().UTC(), detail.text, gtid
	out.State = divergence.Replayed
	if detail.conflict {
		out.State = divergence.Conflict
	}
	ok, err := divergence.Finish(ctx, r.a.o.Store, out, rev, "collector@"+r.a.o.DC)
	switch {
	case err != nil:
		// Retried: a reapply committed now is found present next time.
		log.Warn().Err(err).Msg("reapply outcome not stored yet; retrying")
		r.mu.Lock()
		r.retry[key] = true
		r.mu.Unlock()
		return
	case !ok:
		log.Info().Msg("divergence entry changed during its reapply; reading it again")
		r.mu.Lock()
		r.retry[key] = true
		r.mu.Unlock()
		return
	}
	r.done(key)
	r.a.m.replays.WithLabelValues(strings.ToLower(out.State)).Inc()
	ev := log.Info()
	if detail.conflict {
		ev = log.Warn()
	}
	ev.Str("state", out.State).Str("detail", detail.text).Str("gtid", gtid).Msg("divergence entry reapplied")
}

// replayDetail is what a reapply found.
type replayDetail struct {
	text     string
	conflict bool
}

func conflictf(format string, args ...any) replayDetail {
	return replayDetail{text: fmt.Sprintf(format, args...), conflict: true}
}

// reapply checks and applies e's change at this DC's master. An error
// means it could not be decided now (try again).
func (r *replays) reapply(ctx context.Context, e divergence.Entry) (replayDetail, string, error) {
	ev := &drplanev1.ChangeEvent{}
	if err := proto.Unmarshal(e.Change, ev); err != nil || len(e.Change) == 0 {
		return conflictf("the change kept with the entry does not decode; nothing to reapply"), "", nil
	}
	sh, ok := r.a.maps.shard(e.Keyspace, e.Shard)
	switch {
	case !ok:
		return replayDetail{}, "", fmt.Errorf("shard %s/%d not in this collector's shard map yet", e.Keyspace, e.Shard)
	case sh.Owner != r.a.o.DC:
		return conflictf("shard %s/%d is owned by %s now, not %s: nothing written; resolve the entry again", e.Keyspace, e.Shard,
			sh.Owner, r.a.o.DC), "", nil
	case sh.State != shardmap.Active:
		return replayDetail{}, "", fmt.Errorf("shard %s/%d is %s (a handoff or an operator's freeze): waiting", e.Keyspace, e.Shard, sh.State)
	}
	all := r.a.o.Keyspaces()
	i := slices.IndexFunc(all, func(ks topology.Keyspace) bool { return ks.Name == e.Keyspace })
	if i < 0 {
		return conflictf("keyspace %s is not in the topology any more", e.Keyspace), "", nil
	}
	ks := all[i]
	if len(ev.GetRows()) > 0 && !ks.HasTable(ev.GetTable()) {
		return conflictf("table %q is not a table of keyspace %s: nothing written", ev.GetTable(), ks.Name), "", nil
	}
	db := ks.Database
	pool, err := r.a.sess.currentPool()
	if err != nil {
		return replayDetail{}, "", err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return replayDetail{}, "", err
	}
	defer conn.Close()
	// An ordinary binlogged write, in UTC as the apply path's.
	if _, err := conn.ExecContext(ctx, "SET SESSION skip_replication = 0, time_zone = '+00:00'"); err != nil {
		discard(conn)
		return replayDetail{}, "", err
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "SET SESSION time_zone = DEFAULT") }()
	return replayTx(ctx, conn, db, ev)
}

// replayTx runs the check and the write in one transaction.
func replayTx(ctx context.Context, conn *sql.Conn, db string, ev *drplanev1.ChangeEvent) (replayDetail, string, error) {
	ncols, err := columnCount(ctx, conn, db, ev.GetTable())
	if err != nil {
		return replayDetail{}, "", err
	}
	if ncols == 0 {
		return conflictf("table %s.%s does not exist at the owner", db, ev.GetTable()), "", nil
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return replayDetail{}, "", err
	}
	defer func() { _ = tx.Rollback() }()
	table := qualify(db, ev.GetTable())
	apply, present := 0, 0
	for i, rc := range ev.GetRows() {
		v, why, err := checkRow(ctx, tx, table, ncols, rc)
		if err != nil {
			return replayDetail{}, "", err
		}
		switch v {
		case rowApply:
			apply++
		case rowPresent:
			present++
		default:
			return conflictf("row %d (%s): %s; nothing written", i+1, keyText(rc), why), "", nil
		}
	}
	switch {
	case apply == 0:
		return replayDetail{text: "present already: every row is as the change leaves it; nothing written"}, "", nil
	case present > 0:
		return conflictf("%d of %d rows are as the change leaves them already, the others as it found them: the owner wrote some since; nothing written",
			present, apply+present), "", nil
	}
	if err := execOps(ctx, tx, rowOps(ev, db)); err != nil {
		return replayDetail{}, "", err
	}
	if err := tx.Commit(); err != nil {
		return replayDetail{}, "", err
	}
	var gtid string
	if err := conn.QueryRowContext(ctx, "SELECT @@SESSION.last_gtid").Scan(&gtid); err != nil {
		gtid = ""
	}
	return replayDetail{text: fmt.Sprintf("applied: %d rows, each as the change found it", apply)}, gtid, nil
}

// columnCount returns how many columns the table has (0: no such table).
func columnCount(ctx context.Context, conn *sql.Conn, db, table string) (int, error) {
	var n int
	err := conn.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", db, table).Scan(&n)
	return n, err
}

// checkRow locks one row change's rows and compares them with its images.
// An image that is not the whole row (binlog_row_image not FULL) proves
// nothing and is a conflict.
func checkRow(ctx context.Context, tx *sql.Tx, table string, ncols int, rc *drplanev1.RowChange) (rowVerdict, string, error) {
	before, after := rc.GetBefore(), rc.GetAfter()
	op := rc.GetOp()
	if len(rc.GetKey()) == 0 {
		return rowConflict, "the table has no primary key: the row cannot be found for certain", nil
	}
	if (op != drplanev1.RowOp_ROW_OP_INSERT && len(before) != ncols) || (op != drplanev1.RowOp_ROW_OP_DELETE && len(after) != ncols) {
		return rowConflict, fmt.Sprintf("the change's row images have %d/%d columns, the table %d (binlog_row_image is not FULL): cannot prove the row unchanged",
			len(before), len(after), ncols), nil
	}
	switch op {
	case drplanev1.RowOp_ROW_OP_INSERT:
		found, _, same, err := lookRow(ctx, tx, table, rc.GetKey(), nil, after)
		switch {
		case err != nil:
			return rowConflict, "", err
		case !found:
			return rowApply, "", nil
		case same:
			return rowPresent, "", nil
		}
		return rowConflict, "a row with this key exists at the owner (written there since)", nil
	case drplanev1.RowOp_ROW_OP_DELETE:
		found, was, _, err := lookRow(ctx, tx, table, keyIn(before, rc.GetKey()), before, nil)
		switch {
		case err != nil:
			return rowConflict, "", err
		case !found:
			return rowPresent, "", nil
		case was:
			return rowApply, "", nil
		}
		return rowConflict, "the row at the owner differs from the change's before image (newer data)", nil
	case drplanev1.RowOp_ROW_OP_UPDATE:
		oldKey := keyIn(before, rc.GetKey())
		if moved := movedKey(rc); moved != nil {
			// The key changed: the old row must be as found, the new key
			// free — or the old key free and the new row as left.
			foundOld, wasOld, _, err := lookRow(ctx, tx, table, oldKey, before, nil)
			if err != nil {
				return rowConflict, "", err
			}
			foundNew, _, sameNew, err := lookRow(ctx, tx, table, keyIn(after, rc.GetKey()), nil, after)
			if err != nil {
				return rowConflict, "", err
			}
			switch {
			case foundOld && wasOld && !foundNew:
				return rowApply, "", nil
			case !foundOld && foundNew && sameNew:
				return rowPresent, "", nil
			}
			return rowConflict, "the update moved the row's key, and the owner's rows at the old and new keys are not as the change found or left them", nil
		}
		found, was, same, err := lookRow(ctx, tx, table, oldKey, before, after)
		switch {
		case err != nil:
			return rowConflict, "", err
		case !found:
			return rowConflict, "the row is gone at the owner (deleted there since)", nil
		case was:
			return rowApply, "", nil
		case same:
			return rowPresent, "", nil
		}
		return rowConflict, "the row at the owner differs from the change's before image (newer data)", nil
	}
	return rowConflict, fmt.Sprintf("unknown row operation %s", op), nil
}

// keyIn returns image's values of the key columns (the key's own values
// when the image lacks one).
func keyIn(image, key []*drplanev1.Column) []*drplanev1.Column {
	out := make([]*drplanev1.Column, 0, len(key))
	for _, k := range key {
		c := k
		for _, ic := range image {
			if ic.GetName() == k.GetName() {
				c = ic
			}
		}
		out = append(out, c)
	}
	return out
}

// lookRow reads the row with key under an exclusive lock and reports
// whether it exists and whether it equals a (when given) and b (when
// given), column by column with NULL-safe equality.
func lookRow(ctx context.Context, tx *sql.Tx, table string, key, a, b []*drplanev1.Column) (found, eqA, eqB bool, err error) {
	if len(key) == 0 {
		return false, false, false, errNoKey
	}
	var args []any
	eq := func(img []*drplanev1.Column) string {
		if img == nil {
			return "0"
		}
		parts := make([]string, len(img))
		for i, c := range img {
			v, _ := sqlValue(c.GetValue())
			parts[i] = quoteIdent(c.GetName()) + " <=> ?"
			args = append(args, v)
		}
		return "(" + strings.Join(parts, " AND ") + ")"
	}
	exprA, exprB := eq(a), eq(b)
	where := make([]string, len(key))
	for i, c := range key {
		v, _ := sqlValue(c.GetValue())
		where[i] = quoteIdent(c.GetName()) + " = ?"
		args = append(args, v)
	}
	q := "SELECT " + exprA + ", " + exprB + " FROM " + table + " WHERE " + strings.Join(where, " AND ") + " FOR UPDATE"
	var x, y sql.NullBool
	switch err := tx.QueryRowContext(ctx, q, args...).Scan(&x, &y); {
	case errors.Is(err, sql.ErrNoRows):
		return false, false, false, nil
	case err != nil:
		return false, false, false, fmt.Errorf("read row of %s: %w", table, err)
	}
	return true, x.Valid && x.Bool, y.Valid && y.Bool, nil
}

// errNoKey refuses a row change without key columns.
var errNoKey = errors.New("apply: reapply of a row change without its key")

// keyText renders a row change's key as name=value, for the conflict.
func keyText(rc *drplanev1.RowChange) string {
	parts := make([]string, 0, len(rc.GetKey()))
	for _, c := range rc.GetKey() {
		v, _ := sqlValue(c.GetValue())
		if b, ok := v.([]byte); ok {
			v = string(b)
		}
		parts = append(parts, fmt.Sprintf("%s=%v", c.GetName(), v))
	}
	return strings.Join(parts, ", ")
}
