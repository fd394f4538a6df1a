package reship

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
)

func TestPlanRewind(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cp, binlog, slave string
		serverID          uint32
		to                string
		lost              []lostRange
		transactions      int64
		noRewind          bool
	}{
		{name: "promoted replica lacks the tail", cp: "0-1-105", binlog: "0-1-100", slave: "0-1-100", serverID: 2,
			to: "0-1-100", lost: []lostRange{{0, 100, 105}}, transactions: 5},
		{name: "new master wrote past the checkpoint's sequence", cp: "0-1-105", binlog: "0-2-108", slave: "0-1-100", serverID: 2,
			to: "0-1-100", lost: []lostRange{{0, 100, 105}}, transactions: 5},
		{name: "no slave position: the binlog end", cp: "0-1-105", binlog: "0-1-103", slave: "", serverID: 2,
			to: "0-1-103", lost: []lostRange{{0, 103, 105}}, transactions: 2},
		{name: "only one domain lost", cp: "0-1-105,7-9-3", binlog: "0-1-101,7-9-3", slave: "0-1-101,7-9-3", serverID: 2,
			to: "0-1-101,7-9-3", lost: []lostRange{{0, 101, 105}}, transactions: 4},
		{name: "domain unknown to the master", cp: "0-1-5", binlog: "", slave: "", serverID: 2,
			to: "", lost: []lostRange{{0, 0, 5}}, transactions: 5},
		{name: "master holds the checkpoint", cp: "0-1-105", binlog: "0-1-110", slave: "0-1-110", serverID: 2, noRewind: true},
		{name: "the master wrote the checkpoint's GTID itself", cp: "0-2-105", binlog: "0-2-105", slave: "0-1-90", serverID: 2, noRewind: true},
		{name: "equal positions", cp: "0-1-105", binlog: "0-1-105", slave: "0-1-105", serverID: 2, noRewind: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := planRewind(tc.cp, tc.binlog, tc.slave, tc.serverID)
			if tc.noRewind {
				require.ErrorIs(t, err, ErrNoRewind)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.cp, plan.From)
			assert.Equal(t, tc.to, plan.To)
			assert.Equal(t, tc.lost, plan.Lost)
			assert.Equal(t, tc.transactions, plan.Transactions)
		})
	}
	_, err := planRewind("junk", "", "", 1)
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNoRewind))
}

// TestLossyFailoverRewinds promotes a replica that stopped replicating
// before the master committed (and reship shipped) five transactions; the
// new master then commits six of its own before reship reconnects. Reship
// must move back to the new master's position, name exactly the five lost
// requests on the failover record and in the audit log, and ship the new
// master's transactions.
func TestLossyFailoverRewinds(t *testing.T) {
	b := startBed(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := b.startEngine(StartCurrent)
	check.For(t, waitLong, 10*time.Millisecond, func() error { return check.That(e.Check(ctx) == nil, "binlog stream never ready") })
	insertOrders(t, b, b.db.Master, 1, 3)
	b.db.WaitReplicas(10 * time.Second)
	b.waitCaughtUp(b.db.Master)

	old, next, other := b.db.Master, b.db.Replicas[0], b.db.Replicas[1]
	nextDB := b.db.AdminDB(next)
	require.NoError(t, mysqld.StopSlave(ctx, nextDB))
	insertOrders(t, b, old, 100, 5) // semi-sync acked by the other replica
	b.waitCaughtUp(old)
	lostIDs := map[string]bool{}
	for _, m := range b.readOut() {
		for _, id := range rowIDs(m.ev) {
			if id >= 100 && id < 105 {
				lostIDs[m.ev.RequestId] = true
			}
		}
	}
	require.Len(t, lostIDs, 5)

	t.Log("the lossy promotion: the old master and the other replica are fenced, the stale replica promoted")
	require.NoError(t, mysqld.SetReadOnly(ctx, b.db.AdminDB(old), true))
	require.NoError(t, mysqld.DisableSemiSyncMaster(ctx, b.db.AdminDB(old)))
	require.NoError(t, mysqld.StopSlave(ctx, b.db.AdminDB(other)))
	promotedAt := b.binlogPos(next)
	require.NoError(t, mysqld.ResetSlaveAll(ctx, nextDB))
	require.NoError(t, mysqld.SetReadOnly(ctx, nextDB, false))
	insertOrders(t, b, next, 150, 6) // written before reship follows the new master

	now := time.Now().UTC()
	fo := state.FailoverRecord{
		ID: state.NewRecordID(now, testDC, testCluster), DC: testDC, Cluster: testCluster, Kind: state.KindFailover,
		Trigger: "analysis", Analysis: "DeadMaster", OldMaster: old.Name(), NewMaster: next.Name(),
		Outcome: state.OutcomeSucceeded, DetectedAt: now, StartedAt: now, FinishedAt: now, Agent: "test",
	}
	require.NoError(t, b.store.PutFailover(ctx, fo, nil))
	rec, rev, err := b.store.Master(ctx, testDC, testCluster)
	require.NoError(t, err)
	rec.Instance, rec.Addr, rec.Term, rec.Reason, rec.UpdatedAt = next.Name(), next.Addr(), rec.Term+1, "test lossy failover", now
	_, err = b.store.PutMaster(ctx, rec, rev, nil)
	require.NoError(t, err)

	var rw state.Rewind
	check.For(t, waitLong, 20*time.Millisecond, func() error {
		got, _, err := state.Get[state.FailoverRecord](ctx, b.store, b.store.FailoverKey(testDC, testCluster, fo.ID))
		if err != nil {
			return err
		}
		if got.Rewind == nil {
			return fmt.Errorf("no rewind on the failover record yet")
		}
		rw = *got.Rewind
		return nil
	})
	assert.Equal(t, promotedAt, rw.To)
	assert.Equal(t, int64(5), rw.Transactions)
	assert.Len(t, rw.LostGTIDs, 5)
	assert.Equal(t, 5, rw.LostRequestsTotal)
	assert.True(t, rw.Complete)
	got := map[string]bool{}
	for _, id := range rw.LostRequests {
		got[id] = true
	}
	assert.Equal(t, lostIDs, got)

	t.Log("the new master's transactions are shipped, each once")
	b.waitCaughtUp(next)
	msgs := b.readOut()
	requireUnique(t, msgs)
	rows := byRowID(msgs)
	for id := int64(150); id < 156; id++ {
		require.Len(t, rows[id], 1, "order %d", id)
	}
	insertOrders(t, b, next, 200, 2)
	b.waitCaughtUp(next)
	rows = byRowID(b.readOut())
	require.Len(t, rows[200], 1)
	require.Len(t, rows[201], 1)
	assert.Equal(t, 1.0, e.counter("drplane_reship_rewinds_total"))
	assert.Equal(t, 5.0, e.counter("drplane_reship_rewind_lost_requests_total"))
	assert.Equal(t, 1.0, e.counter("drplane_reship_syncer_restarts_total", "reason", "rewind"))

	events, err := audit.NewOutbox(b.store).List(ctx, 100)
	require.NoError(t, err)
	found := false
	for _, ev := range events {
		if ev.Action == "reship.rewind" {
			found = true
			assert.Equal(t, fo.ID, ev.Params["failover_id"])
			assert.Equal(t, "5", ev.Params["lost_requests"])
			assert.Equal(t, int64(5), ev.RPOTransactions)
		}
	}
	assert.True(t, found, "no reship.rewind audit event")

	// The shipped, discarded requests are divergence like the fenced ones:
	// listed with the change, the failover and their kind.
	entries, err := divergence.List(ctx, b.store, testDC)
	require.NoError(t, err)
	discarded := map[string]bool{}
	for _, ent := range entries {
		assert.Equal(t, divergence.KindDiscarded, ent.Kind, ent.RequestID)
		assert.Equal(t, fo.ID, ent.FailoverID, ent.RequestID)
		assert.NotEmpty(t, ent.Owner, ent.RequestID)
		assert.Equal(t, divergence.Open, ent.State)
		assert.NotEmpty(t, ent.Change)
		discarded[ent.RequestID] = true
	}
	assert.Equal(t, lostIDs, discarded)
}
