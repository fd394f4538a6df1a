package apply_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Shards of the replay test's map (shardmap.New over dcA1, dcA2, dcB1):
// shard 2 is dcB1's, shard 0 dcA1's.
const (
	shardOfB1 = 2
	shardOfA1 = 0
)

// saveMap stores a topology of the three test DCs and the keyspace's
// default map.
func saveMap(t *testing.T, b *bed) {
	t.Helper()
	ks := topology.Keyspace{Name: keyspace, Cluster: "main", Database: database, Table: "orders", Tables: keyspaceTables,
		ShardKey: "user_id", Shards: 8}
	topo := topology.Topology{
		Cities:    []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:       []topology.DC{{Name: dcA1, City: "city-a"}, {Name: dcA2, City: "city-a"}, {Name: dcB1, City: "city-b"}},
		Keyspaces: []topology.Keyspace{ks},
	}
	for i, dc := range topo.DCs {
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: fmt.Sprintf("127.0.0.1:%d", 9+i)}}})
	}
	_, err := b.st.PutTopology(t.Context(), topo, -1)
	require.NoError(t, err)
	m := shardmap.New(ks, topo)
	require.Equal(t, dcB1, m.Shards[shardOfB1].Owner)
	require.Equal(t, dcA1, m.Shards[shardOfA1].Owner)
	_, err = shardmap.Save(t.Context(), b.st, m, 0, nil, topo)
	require.NoError(t, err)
}

// reapplying records an entry of dcA1's request rid as an operator's
// reapply left it: REPLAYING, targeting target.
func reapplying(t *testing.T, b *bed, rid string, shard int32, target string, rows ...*drplanev1.RowChange) string {
	t.Helper()
	return reapplyingTable(t, b, rid, shard, target, "items", rows...)
}

// reapplyingTable is reapplying with a change of the given table.
func reapplyingTable(t *testing.T, b *bed, rid string, shard int32, target, table string, rows ...*drplanev1.RowChange) string {
	t.Helper()
	ev := &drplanev1.ChangeEvent{OriginDc: dcA1, RequestId: rid, Gtid: "0-11-" + rid, Keyspace: keyspace, Shard: shard,
		Schema: database, Table: table, Rows: rows}
	data, err := proto.Marshal(ev)
	require.NoError(t, err)
	e := divergence.Entry{Origin: dcA1, RequestID: rid, GTID: ev.GetGtid(), Keyspace: keyspace, Shard: shard, Owner: target,
		DetectedBy: "reship@" + dcA1, DetectedAt: time.Now().UTC(), Rows: len(rows), Change: data, State: divergence.Replaying,
		Resolution: &divergence.Resolution{Action: divergence.ActionReapply, By: "oncall", Reason: "test", At: time.Now().UTC(),
			OperationID: "op-" + rid, Target: target}}
	created, err := divergence.Record(t.Context(), b.st, e)
	require.NoError(t, err)
	require.True(t, created)
	return e.ID()
}

// settled waits until the entry is no longer REPLAYING and returns it.
func settled(t *testing.T, b *bed, id string) divergence.Entry {
	t.Helper()
	var e divergence.Entry
	check.For(t, waitLong, poll, func() error {
		var err error
		e, err = divergence.Get(context.Background(), b.st, id)
		if err != nil {
			return err
		}
		if e.State == divergence.Replaying {
			return errors.New(id + " still REPLAYING")
		}
		return nil
	})
	return e
}

func item(order, line int64, sku string, qty int64) itemRow {
	return itemRow{Order: order, Line: line, SKU: sku, Qty: qty}
}

func itemQty(t *testing.T, b *bed, order, line int64) int64 {
	t.Helper()
	return scalar(t, b.app, "SELECT COALESCE(SUM(qty), -1) FROM items WHERE order_id = ? AND line = ?", order, line)
}

// testReapply: an operator's reapply of a divergence entry at this DC, the
// shard's owner, applies the change only over rows still as the change
// found them, as an ordinary binlogged write; newer data at the owner, a
// shard owned elsewhere or images that are not whole rows make it
// CONFLICT with nothing written; a reapply found committed already (a
// crash before its outcome was stored) is REPLAYED without writing again;
// another DC's reapply is left alone.
func testReapply(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	saveMap(t, b)
	m := newModel()
	for _, q := range []string{
		"INSERT INTO items VALUES (1, 2, 'b', 5)", // updated by the change, as found
		"INSERT INTO items VALUES (1, 3, 'c', 9)", // updated here since: 9, not the change's 7
	} {
		_, err := b.app.ExecContext(t.Context(), q)
		require.NoError(t, err)
	}
	admin := sh.db.AdminDB(sh.db.Master)
	var from string
	require.NoError(t, admin.QueryRowContext(t.Context(), "SELECT @@gtid_binlog_pos").Scan(&from))

	// Recorded before the collector starts: found by its first read.
	insert := reapplying(t, b, "r1", shardOfB1, dcB1, m.insertItem(item(1, 1, "a", 1)))
	b.start(nil, nil)
	update := reapplying(t, b, "r2", shardOfB1, dcB1, m.updateOrderItem(item(1, 2, "b", 5), item(1, 2, "b", 6)))
	newer := reapplying(t, b, "r3", shardOfB1, dcB1, m.updateOrderItem(item(1, 3, "c", 7), item(1, 3, "c", 8)))
	gone := reapplying(t, b, "r4", shardOfB1, dcB1, m.deleteItem(item(1, 4, "d", 1)))
	elsewhere := reapplying(t, b, "r5", shardOfA1, dcB1, m.insertItem(item(2, 1, "e", 1)))
	partial := reapplying(t, b, "r6", shardOfB1, dcB1, &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
		Key: []*drplanev1.Column{col("order_id", int64(3)), col("line", int64(1))}, After: []*drplanev1.Column{col("order_id", int64(3)), col("line", int64(1))}})
	other := reapplying(t, b, "r7", shardOfB1, dcA2, m.insertItem(item(4, 1, "f", 1)))
	// A table of the database outside the keyspace: never written.
	foreign := reapplyingTable(t, b, "r8", shardOfB1, dcB1, "apply_count", &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE,
		Key:    []*drplanev1.Column{col("id", int64(1))},
		Before: []*drplanev1.Column{col("id", int64(1)), col("n", int64(0))},
		After:  []*drplanev1.Column{col("id", int64(1)), col("n", int64(1000))}})

	e := settled(t, b, insert)
	assert.Equal(t, divergence.Replayed, e.State, e.Resolution.Detail)
	assert.Contains(t, e.Resolution.Detail, "applied")
	assert.NotEmpty(t, e.Resolution.GTID)
	assert.False(t, e.Resolution.FinishedAt.IsZero())
	assert.EqualValues(t, 1, itemQty(t, b, 1, 1))

	e = settled(t, b, update)
	assert.Equal(t, divergence.Replayed, e.State, e.Resolution.Detail)
	assert.EqualValues(t, 6, itemQty(t, b, 1, 2))

	e = settled(t, b, newer)
	assert.Equal(t, divergence.Conflict, e.State)
	assert.Contains(t, e.Resolution.Detail, "differs from the change's before image")
	assert.EqualValues(t, 9, itemQty(t, b, 1, 3), "the owner's newer row is not overwritten")

	e = settled(t, b, gone)
	assert.Equal(t, divergence.Replayed, e.State, "a delete of a row that is not there: present already")
	assert.Contains(t, e.Resolution.Detail, "present already")
	assert.Empty(t, e.Resolution.GTID, "nothing written")

	e = settled(t, b, elsewhere)
	assert.Equal(t, divergence.Conflict, e.State)
	assert.Contains(t, e.Resolution.Detail, "owned by "+dcA1)
	assert.EqualValues(t, -1, itemQty(t, b, 2, 1))

	e = settled(t, b, partial)
	assert.Equal(t, divergence.Conflict, e.State)
	assert.Contains(t, e.Resolution.Detail, "binlog_row_image")
	assert.EqualValues(t, -1, itemQty(t, b, 3, 1))

	e = settled(t, b, foreign)
	assert.Equal(t, divergence.Conflict, e.State)
	assert.Contains(t, e.Resolution.Detail, `table "apply_count" is not a table of keyspace`)
	assert.NotEqualValues(t, 1000, scalar(t, b.app, "SELECT n FROM apply_count"), "nothing written")

	t.Log("the outcome lost (a crash after the commit): the same reapply again is present already")
	e, rev, err := divergence.GetRev(t.Context(), b.st, update)
	require.NoError(t, err)
	gtid := e.Resolution.GTID
	e.State, e.Resolution.Detail, e.Resolution.GTID, e.Resolution.FinishedAt = divergence.Replaying, "", "", time.Time{}
	key, _ := divergence.KeyOf(b.st, update)
	_, err = state.Put(t.Context(), b.st, key, e, state.PutOptions{PrevRev: rev})
	require.NoError(t, err)
	e = settled(t, b, update)
	assert.Equal(t, divergence.Replayed, e.State)
	assert.Contains(t, e.Resolution.Detail, "present already")
	assert.EqualValues(t, 6, itemQty(t, b, 1, 2))

	got, err := divergence.Get(t.Context(), b.st, other)
	require.NoError(t, err)
	assert.Equal(t, divergence.Replaying, got.State, "another DC's reapply is not this collector's")

	t.Log("the reapplies are ordinary writes of this DC: binlogged without the skip flag, so its reship ships them")
	txns := binlogTxns(t, sh, from, gtid)
	var found *binlogTxn
	for _, tx := range txns {
		if tx.gtid == gtid {
			found = tx
		}
	}
	require.NotNil(t, found, "reapply %s not in the binlog", gtid)
	assert.True(t, found.tables["items"])
	for i, f := range found.flags {
		assert.Zero(t, f&skipReplicationFlag, "event %d of the reapply has the skip flag", i)
	}

	outcomes := map[string]int{}
	all, err := audit.NewOutbox(b.st).List(t.Context(), 0)
	require.NoError(t, err)
	for _, ev := range all {
		if ev.Action == divergence.ActionReplayed || ev.Action == divergence.ActionReplayConflict {
			require.NoError(t, ev.Validate())
			assert.Equal(t, "collector@"+dcB1, ev.Actor)
			outcomes[ev.Action]++
		}
	}
	assert.Equal(t, map[string]int{divergence.ActionReplayed: 4, divergence.ActionReplayConflict: 4}, outcomes)
}

// updateOrderItem is an update of an item line (its key unchanged).
func (m *model) updateOrderItem(before, after itemRow) *drplanev1.RowChange {
	m.items[[2]int64{after.Order, after.Line}] = after
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE,
		Key: []*drplanev1.Column{col("order_id", after.Order), col("line", after.Line)}, Before: before.cols(), After: after.cols()}
}
