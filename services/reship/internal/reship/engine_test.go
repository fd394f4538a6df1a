package reship

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/reship/internal/ship"
)

var gtidRe = regexp.MustCompile(`^0-\d+-\d+$`)

// rowIDs returns the order ids an event carries, from its key columns.
func rowIDs(ev *drplanev1.ChangeEvent) []int64 {
	var ids []int64
	for _, r := range ev.Rows {
		id, _ := strconv.ParseInt(colMap(r.Key)["id"], 10, 64)
		ids = append(ids, id)
	}
	return ids
}

// byRowID indexes the events of msgs by the order ids they carry, counting
// how often each id appears.
func byRowID(msgs []outMsg) map[int64][]outMsg {
	out := map[int64][]outMsg{}
	for _, m := range msgs {
		for _, id := range rowIDs(m.ev) {
			out[id] = append(out[id], m)
		}
	}
	return out
}

// requireUnique fails when a request id or Nats-Msg-Id appears twice.
func requireUnique(t *testing.T, msgs []outMsg) {
	t.Helper()
	seen := map[string]uint64{}
	for _, m := range msgs {
		prev, dup := seen[m.ev.RequestId]
		require.False(t, dup, "request %s stored twice (seq %d and %d)", m.ev.RequestId, prev, m.seq)
		seen[m.ev.RequestId] = m.seq
		require.Equal(t, ship.MsgID(testDC, m.ev.RequestId), m.msgID)
	}
}

func insertOrders(t *testing.T, b *bed, inst *mysqld.Instance, from, n int) {
	t.Helper()
	db := b.db.AppDB(inst)
	for i := from; i < from+n; i++ {
		exec(t, db, fmt.Sprintf("INSERT INTO orders (id, user_id, amount_cents, note) VALUES (%d, %d, %d, 'n%d')", i, 7000+i, i*10, i))
	}
}

// insertOrdersErr is insertOrders for another goroutine.
func insertOrdersErr(b *bed, inst *mysqld.Instance, from, n int) error {
	db := b.db.AppDB(inst)
	for i := from; i < from+n; i++ {
		_, err := db.Exec(fmt.Sprintf("INSERT INTO orders (id, user_id, amount_cents, note) VALUES (%d, %d, %d, 'n%d')", i, 7000+i, i*10, i))
		if err != nil {
			return err
		}
	}
	return nil
}

func TestCaptureRestartFailoverRepublish(t *testing.T) {
	began := time.Now()
	b := startBed(t, 3)
	t.Logf("bed up in %s", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	app := b.db.AppDB(b.db.Master)

	// Written before the first start: start=current does not ship it.
	exec(t, app, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (1, 1001, 100, 'before')")
	e1 := b.startEngine(StartCurrent)
	check.For(t, waitLong, 10*time.Millisecond, func() error { _, ok := b.checkpoint(); return check.That(ok, "ok") })
	check.For(t, waitLong, 10*time.Millisecond, func() error { return check.That(e1.Check(ctx) == nil, "binlog stream never ready") })

	{
		t.Log("rows become ChangeEvents")
		exec(t, app, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (10, 1, 100, 'a'), (11, 2, 200, 'b'), (12, 3, 300, 'c'), (13, 4, 400, NULL)")
		exec(t, app, "UPDATE orders SET amount_cents = amount_cents + 1, note = 'upd' WHERE id = 10")
		exec(t, app, "DELETE FROM orders WHERE id = 11")
		// A collector's transaction: skip_replication on the session.
		conn, err := app.Conn(ctx)
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SET SESSION skip_replication = 1")
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents) VALUES (20, 20, 2000), (21, 21, 2100)")
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SET SESSION skip_replication = 0")
		require.NoError(t, err)
		require.NoError(t, conn.Close())
		exec(t, app, "INSERT INTO notes (id, body) VALUES (1, 'not in any keyspace')")
		exec(t, app, "CREATE TABLE extra (id INT PRIMARY KEY)")
		exec(t, app, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (30, 5, 500, 'last')")
		b.waitCaughtUp(b.db.Master)

		msgs := b.readOut()
		requireUnique(t, msgs)
		rows := byRowID(msgs)
		for _, id := range []int64{1, 20, 21} {
			require.NotContains(t, rows, id, "order %d must not be shipped", id)
		}
		// The multi-row insert: one event per shard, each row in its user's shard.
		insertTxn := rows[12][0].ev.Gtid
		shards := map[int32]bool{}
		for _, m := range msgs {
			ev := m.ev
			require.Equal(t, testDC, ev.OriginDc)
			require.Regexp(t, gtidRe, ev.Gtid)
			require.Equal(t, ev.Gtid+"/"+strconv.Itoa(int(ev.Shard)), ev.RequestId)
			require.Equal(t, fmt.Sprintf("drplane.out.%s.orders.%d", testDC, ev.Shard), m.subject)
			require.Equal(t, "orders", ev.Keyspace)
			require.Equal(t, b.db.Database, ev.Schema)
			require.Equal(t, "orders", ev.Table)
			require.NotNil(t, ev.CommitTime)
			require.NotNil(t, ev.CapturedAt)
			require.NotEmpty(t, ev.Position)
			for _, r := range ev.Rows {
				img := r.After
				if r.Op == drplanev1.RowOp_ROW_OP_DELETE {
					img = r.Before
				}
				uid, err := strconv.ParseInt(colMap(img)["user_id"], 10, 64)
				require.NoError(t, err)
				require.Equal(t, b.shardOf(uid), ev.Shard, "row of user %d in the wrong shard", uid)
			}
			if ev.Gtid == insertTxn {
				require.False(t, shards[ev.Shard], "two events for shard %d of one transaction", ev.Shard)
				shards[ev.Shard] = true
			}
		}
		want := map[int32]bool{}
		for uid := int64(1); uid <= 4; uid++ {
			want[b.shardOf(uid)] = true
		}
		require.Equal(t, want, shards)

		ins := rows[13][0].ev
		require.Len(t, rows[13], 1, "order 13: inserted only")
		var r13 *drplanev1.RowChange
		for _, r := range ins.Rows {
			if colMap(r.Key)["id"] == "13" {
				r13 = r
			}
		}
		require.NotNil(t, r13)
		require.Equal(t, drplanev1.RowOp_ROW_OP_INSERT, r13.Op)
		require.Empty(t, r13.Before)
		after := colMap(r13.After)
		require.Equal(t, map[string]string{"id": "13", "user_id": "4", "amount_cents": "400", "note": "NULL", "updated_at": after["updated_at"]}, after)
		require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$`, after["updated_at"])
		require.Len(t, r13.Key, 1)

		require.Len(t, rows[10], 2, "order 10: insert and update")
		upd := rows[10][1].ev
		require.Len(t, upd.Rows, 1)
		u := upd.Rows[0]
		require.Equal(t, drplanev1.RowOp_ROW_OP_UPDATE, u.Op)
		require.Equal(t, "100", colMap(u.Before)["amount_cents"])
		require.Equal(t, "101", colMap(u.After)["amount_cents"])
		require.Equal(t, "upd", colMap(u.After)["note"])
		require.Equal(t, map[string]string{"id": "10"}, colMap(u.Key))

		require.Len(t, rows[11], 2, "order 11: insert and delete")
		del := rows[11][1].ev.Rows[0]
		require.Equal(t, drplanev1.RowOp_ROW_OP_DELETE, del.Op)
		require.Empty(t, del.After)
		require.Equal(t, "200", colMap(del.Before)["amount_cents"])

		require.GreaterOrEqual(t, e1.counter("drplane_reship_skipped_transactions_total", "reason", "loop"), 1.0)
		require.GreaterOrEqual(t, e1.counter("drplane_reship_skipped_transactions_total", "reason", "ddl"), 1.0)
		require.GreaterOrEqual(t, e1.counter("drplane_reship_skipped_transactions_total", "reason", "unmapped"), 1.0)
		require.Equal(t, 1.0, e1.counter("drplane_reship_skipped_rows_total", "reason", "unmapped"))

		// The outbound stream has a durable sourcing consumer for the peer.
		out, err := b.js.Stream(ctx, embednats.OutStream(testDC))
		require.NoError(t, err)
		_, err = out.PushConsumer(ctx, embednats.SourceConsumer(peerDC))
		require.NoError(t, err)

		// Every event is reported CAPTURED with its outbound sequence.
		bySeq := map[uint64]string{}
		for _, m := range msgs {
			bySeq[m.seq] = m.ev.RequestId
		}
		var updates []*drplanev1.LedgerUpdate
		check.For(t, waitLong, 20*time.Millisecond, func() error {
			updates = b.readLedger()
			return check.That(len(updates) >= len(msgs), "len(updates) = %v, want >= len(msgs)", len(updates))
		})
		require.Len(t, updates, len(msgs))
		for _, u := range updates {
			require.Equal(t, drplanev1.LedgerUpdate_KIND_CAPTURED, u.Kind)
			require.Equal(t, bySeq[u.OutboundSeq], u.RequestId)
			require.Equal(t, []string{peerDC}, u.Targets)
			require.Equal(t, testDC, u.Dc)
		}
	}

	{
		t.Log("restart resumes from the checkpoint without gap or duplicate")
		before := len(b.readOut())
		e1.stop()
		insertOrders(t, b, b.db.Master, 100, 40)
		e2 := b.startEngine(StartEarliest) // the checkpoint wins over start
		b.waitCaughtUp(b.db.Master)
		b.binlogPosAt = b.binlogPos(b.db.Master)
		msgs := b.readOut()
		requireUnique(t, msgs)
		rows := byRowID(msgs)
		for id := int64(100); id < 140; id++ {
			require.Len(t, rows[id], 1, "order %d", id)
		}
		require.Len(t, msgs, before+40)
		require.Zero(t, e2.counter("drplane_reship_published_total", "result", "duplicate"), "nothing acknowledged was published again")
		require.Equal(t, 40.0, e2.counter("drplane_reship_published_total", "result", "stored"))

		{
			t.Log("a broken and a silent stream")
			errs := make(chan error, 1)
			go func() { errs <- insertOrdersErr(b, b.db.Master, 140, 60) }()
			check.For(t, waitLong, 5*time.Millisecond, func() error {
				cp, _ := b.checkpoint()
				return check.That(cp.Position != b.binlogPosAt, "cp.Position = %v, want != b.binlogPosAt", cp.Position)
			})
			b.proxy.Cut()
			check.For(t, waitLong, 5*time.Millisecond, func() error {
				return check.That(e2.counter("drplane_reship_syncer_restarts_total", "reason", "stream_error") >= 1, "e2.counter(\"drplane_reship_syncer_restarts_total\", \"reason\", \"stream_error\") = %v, want >= 1", e2.counter("drplane_reship_syncer_restarts_total", "reason", "stream_error"))
			})
			b.proxy.Restore()
			check.For(t, waitLong, 5*time.Millisecond, func() error { return check.That(e2.Check(ctx) == nil, "e2.Check(ctx) == nil") })
			b.proxy.Blackhole() // the established stream falls silent: the read timeout ends it
			check.For(t, waitLong, 5*time.Millisecond, func() error {
				return check.That(e2.counter("drplane_reship_syncer_restarts_total", "reason", "stream_error") >= 2, "e2.counter(\"drplane_reship_syncer_restarts_total\", \"reason\", \"stream_error\") = %v, want >= 2", e2.counter("drplane_reship_syncer_restarts_total", "reason", "stream_error"))
			})
			b.proxy.RemoveToxics()
			require.NoError(t, <-errs)
			b.waitCaughtUp(b.db.Master)
			msgs := b.readOut()
			requireUnique(t, msgs)
			rows := byRowID(msgs)
			for id := int64(140); id < 200; id++ {
				require.Len(t, rows[id], 1, "order %d", id)
			}
			require.Len(t, msgs, before+100)
			require.Zero(t, e2.counter("drplane_reship_published_total", "result", "duplicate"))
		}

		{
			t.Log("a master failover")
			check.For(t, waitLong, 5*time.Millisecond, func() error { return check.That(e2.Check(ctx) == nil, "e2.Check(ctx) == nil") })
			failover(ctx, t, b)
			insertOrders(t, b, b.db.Replicas[0], 200, 20)
			b.waitCaughtUp(b.db.Replicas[0])
			msgs := b.readOut()
			requireUnique(t, msgs)
			rows := byRowID(msgs)
			for id := int64(200); id < 220; id++ {
				require.Len(t, rows[id], 1, "order %d", id)
			}
			require.Len(t, msgs, before+120)
			require.GreaterOrEqual(t, e2.counter("drplane_reship_syncer_restarts_total", "reason", "master_change"), 1.0)
			require.Zero(t, e2.counter("drplane_reship_published_total", "result", "duplicate"))
			cp, _ := b.checkpoint()
			require.Equal(t, b.db.Replicas[0].Name(), cp.Master)
		}

		{
			t.Log("republish hook")
			msgs := b.readOut()
			first, second := msgs[0], msgs[len(msgs)-1]
			nc := harness.NATSConn(t, b.mesh, testDC)
			resp, err := nc.Request(ship.RepublishSubject(testDC), fmt.Appendf(nil, "[%d, %d, 999999]", first.seq, second.seq), 10*time.Second)
			require.NoError(t, err)
			var reply ship.RepublishReply
			require.NoError(t, json.Unmarshal(resp.Data, &reply))
			require.Len(t, reply.Republished, 2)
			require.Len(t, reply.Failed, 1)
			require.Equal(t, uint64(999999), reply.Failed[0].Seq)
			after := b.readOut()
			require.Len(t, after, len(msgs)+2)
			for i, orig := range []outMsg{first, second} {
				rp := reply.Republished[i]
				require.Equal(t, orig.seq, rp.Seq)
				again := after[len(after)-2+i]
				require.Equal(t, again.seq, rp.NewSeq)
				require.True(t, strings.HasPrefix(again.msgID, orig.msgID+":retry-"), again.msgID)
				require.True(t, proto.Equal(orig.ev, again.ev))
				require.Equal(t, orig.subject, again.subject)
			}
			resp, err = nc.Request(ship.RepublishSubject(testDC), []byte(`{"not":"a list"}`), 10*time.Second)
			require.NoError(t, err)
			reply = ship.RepublishReply{}
			require.NoError(t, json.Unmarshal(resp.Data, &reply))
			require.NotEmpty(t, reply.Error)
		}
	}
	{
		t.Log("the peer DC's inbound stream sources everything")
		jsB := harness.JetStream(t, b.mesh, peerDC)
		pending, err := embednats.EnsureInbound(ctx, jsB, peerDC, []string{testDC}, embednats.StreamOptions{})
		require.NoError(t, err)
		require.Empty(t, pending, "reship created the sourcing consumer")
		want := uint64(len(b.readOut()))
		in, err := jsB.Stream(ctx, embednats.InStream(peerDC))
		require.NoError(t, err)
		check.For(t, waitLong, 20*time.Millisecond, func() error {
			info, err := in.Info(ctx)
			if err != nil {
				return err
			}
			return check.That(info.State.Msgs == want, "info.State.Msgs = %v, want want", info.State.Msgs)
		})
	}
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// failover promotes the first replica by hand: the master is made
// read-only, the replicas have applied everything, the first replica is
// promoted, the second repointed, and the master record updated.
func failover(ctx context.Context, t *testing.T, b *bed) {
	t.Helper()
	old, next, other := b.db.Master, b.db.Replicas[0], b.db.Replicas[1]
	require.NoError(t, mysqld.SetReadOnly(ctx, b.db.AdminDB(old), true))
	b.db.WaitReplicas(10 * time.Second)
	nextDB := b.db.AdminDB(next)
	require.NoError(t, mysqld.StopSlave(ctx, nextDB))
	require.NoError(t, mysqld.ResetSlaveAll(ctx, nextDB))
	require.NoError(t, mysqld.SetReadOnly(ctx, nextDB, false))
	otherDB := b.db.AdminDB(other)
	require.NoError(t, mysqld.StopSlave(ctx, otherDB))
	require.NoError(t, mysqld.ChangeMaster(ctx, otherDB, next.Host(), next.Port(), b.db.Users.ReplUser, b.db.Users.ReplPassword, mysqld.SlavePos))
	require.NoError(t, mysqld.StartSlave(ctx, otherDB))
	require.NoError(t, mysqld.DisableSemiSyncMaster(ctx, b.db.AdminDB(old)))
	rec, rev, err := b.store.Master(ctx, testDC, testCluster)
	require.NoError(t, err)
	rec.Instance, rec.Addr, rec.Term, rec.Reason, rec.UpdatedAt = next.Name(), next.Addr(), rec.Term+1, "test failover", time.Now().UTC()
	_, err = b.store.PutMaster(ctx, rec, rev, nil)
	require.NoError(t, err)
}

// readLedger returns the updates of LEDGER_<dc>.
func (b *bed) readLedger() []*drplanev1.LedgerUpdate {
	t := b.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, ship.LedgerStream(testDC))
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []*drplanev1.LedgerUpdate
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var u drplanev1.LedgerUpdate
		require.NoError(t, proto.Unmarshal(raw.Data, &u))
		out = append(out, &u)
	}
	return out
}
