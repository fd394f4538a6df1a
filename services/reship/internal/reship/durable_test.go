package reship

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
)

// TestUnackedTailNotShipped stalls semi-sync (both replicas' IO threads
// stopped), commits a transaction on the master that waits for an
// acknowledgement that never comes (so no client gets an OK), and kills the
// master -9. The transaction is in the master's binlog the whole time, but
// no replica received it, so the promotion of a replica discards it: reship
// must never put it on the outbound stream, from which every other DC
// applies. The new master's transactions are shipped, and nothing was
// shipped that the DC lacks (no rewind).
func TestUnackedTailNotShipped(t *testing.T) {
	b := startBed(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e := b.startEngine(StartCurrent)
	check.For(t, waitLong, 10*time.Millisecond, func() error { return check.That(e.Check(ctx) == nil, "binlog stream never ready") })
	insertOrders(t, b, b.db.Master, 1, 3)
	b.db.WaitReplicas(10 * time.Second)
	b.waitCaughtUp(b.db.Master)

	old, next, other := b.db.Master, b.db.Replicas[0], b.db.Replicas[1]
	for _, r := range []*mysqld.Instance{next, other} {
		_, err := b.db.AdminDB(r).ExecContext(ctx, "STOP SLAVE IO_THREAD")
		require.NoError(t, err)
	}
	before := b.binlogPos(old)
	committed := make(chan error, 1)
	go func() { committed <- insertOrdersErr(b, old, 500, 1) }()
	// The commit is in the master's binlog (SELECT @@gtid_binlog_pos answers
	// while it waits for the acknowledgement) and reship reads it from there.
	var tail string
	check.For(t, waitLong, 5*time.Millisecond, func() error {
		tail = b.binlogPos(old)
		return check.That(tail != before, "the commit never reached the binlog (still %s)", before)
	})
	select {
	case err := <-committed:
		t.Fatalf("the commit returned (%v) although no replica could acknowledge it", err)
	default:
	}
	pos, err := gtid.ParsePos(tail)
	require.NoError(t, err)
	require.Len(t, pos, 1)
	unacked := pos[0].String()
	t.Logf("un-acknowledged transaction %s in the master's binlog", unacked)
	shipped := func() error {
		for _, m := range b.readOut() {
			if m.ev.GetGtid() == unacked {
				return fmt.Errorf("the un-acknowledged transaction %s was shipped (%s)", unacked, m.ev.GetRequestId())
			}
		}
		return nil
	}
	// Shipping takes milliseconds when nothing holds it back: two seconds
	// of the master waiting for the acknowledgement must ship nothing.
	check.Hold(t, 2*time.Second, 50*time.Millisecond, shipped)

	t.Log("kill -9 of the master before the semi-sync timeout; the replica is promoted without the tail")
	require.NoError(t, old.Kill())
	require.Error(t, <-committed, "the client of the un-acknowledged commit must see it fail")
	nextDB := b.db.AdminDB(next)
	require.NoError(t, mysqld.StopSlave(ctx, nextDB))
	require.NoError(t, mysqld.ResetSlaveAll(ctx, nextDB))
	require.NoError(t, mysqld.SetReadOnly(ctx, nextDB, false))
	rec, rev, err := b.store.Master(ctx, testDC, testCluster)
	require.NoError(t, err)
	rec.Instance, rec.Addr, rec.Term, rec.Reason, rec.UpdatedAt = next.Name(), next.Addr(), rec.Term+1, "test failover", time.Now().UTC()
	_, err = b.store.PutMaster(ctx, rec, rev, nil)
	require.NoError(t, err)

	insertOrders(t, b, next, 600, 2)
	b.waitCaughtUp(next)
	rows := byRowID(b.readOut())
	require.Len(t, rows[600], 1, "the new master's transactions are shipped")
	require.Len(t, rows[601], 1)
	require.Empty(t, rows[500], "the discarded order was shipped")
	require.NoError(t, shipped())
	require.Zero(t, e.counter("drplane_reship_rewinds_total"), "nothing shipped that the DC lacks: no rewind")
}
