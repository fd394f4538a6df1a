package apply_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

// testBarriers asks the collector for handoff barriers as the coordinator
// does: each is a row of the barrier table committed on the master, and
// its GTID the barrier's. The table is created once, not before each
// barrier (that statement is a round trip and a metadata lock inside the
// shard's block window); a table dropped by hand in between is created
// again and the barrier still written.
func testBarriers(t *testing.T, sh *shared) {
	b := newBed(t, sh)
	b.start(nil, nil)
	admin := sh.db.AdminDB(sh.db.Master)
	n := 0
	barrier := func() gtid.GTID {
		t.Helper()
		n++
		id := "op-1-" + strconv.Itoa(n)
		key := b.st.BarrierKey(dcB1, id)
		_, err := state.Put(t.Context(), b.st, key, state.Barrier{ID: id, DC: dcB1, Keyspace: keyspace, Database: database,
			Shards: []int32{1, 2}, OperationID: "op-1", RequestedAt: time.Now().UTC()}, state.PutOptions{PrevRev: 0})
		require.NoError(t, err)
		var got state.Barrier
		check.For(t, waitLong, poll, func() error {
			got, _, err = state.Get[state.Barrier](t.Context(), b.st, key)
			if err != nil {
				return err
			}
			return check.That(got.GTID != "" || got.Error != "", "barrier %s not marked yet", id)
		})
		require.Empty(t, got.Error)
		g, err := gtid.Parse(got.GTID)
		require.NoError(t, err, got.GTID)
		assert.EqualValues(t, 1, scalar(t, admin, "SELECT COUNT(*) FROM "+database+"."+state.BarrierTable+" WHERE id = ? AND shards = '1,2'", id))
		return g
	}
	// Com_create_table counts the CREATE TABLE statements the server ran.
	creates := func() int64 {
		var name string
		var v int64
		require.NoError(t, admin.QueryRowContext(t.Context(), "SHOW GLOBAL STATUS LIKE 'Com_create_table'").Scan(&name, &v))
		return v
	}
	first := barrier()
	before := creates()
	second := barrier()
	assert.Greater(t, second.Seq, first.Seq)
	assert.Equal(t, before, creates(), "a second barrier does not create the table again")

	_, err := admin.ExecContext(t.Context(), "DROP TABLE "+database+"."+state.BarrierTable)
	require.NoError(t, err)
	before = creates()
	third := barrier()
	assert.Greater(t, third.Seq, second.Seq)
	assert.Equal(t, before+1, creates(), "the table dropped by hand is created again")
}
