package masterdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/masterdb"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
)

const followDeadline = 10 * time.Second

// serverID asks the resolver's current handle which server it reaches.
func serverID(ctx context.Context, r *masterdb.Resolver) (uint32, string, error) {
	db, rec, err := r.DB()
	if err != nil {
		return 0, "", err
	}
	var id uint32
	err = db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
	return id, rec.Instance, err
}

func putMaster(t *testing.T, st *state.Store, inst *mysqld.Instance, term, prevRev int64) int64 {
	t.Helper()
	rev, err := st.PutMaster(t.Context(), state.MasterRecord{
		DC: "dc-a1", Cluster: "main", Instance: inst.Name(), Addr: inst.Addr(), Term: term,
		UpdatedAt: time.Now().UTC(), Reason: "test",
	}, prevRev, nil)
	require.NoError(t, err)
	return rev
}

func TestResolverFollowsMasterRecord(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	db := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	r := masterdb.Endpoint{Cluster: "main", Database: db.Database, User: db.AppUser, Password: config.Secret(db.AppPassword)}.
		Resolver(st, "dc-a1", zerolog.Nop())

	// Nothing known yet.
	_, _, err := r.DB()
	require.ErrorIs(t, err, masterdb.ErrNoMaster)
	require.ErrorIs(t, r.Check(ctx), masterdb.ErrNoMaster)

	// The record exists before Run starts: the first read picks it up.
	rev := putMaster(t, st, db.Master, 1, 0)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	check.For(t, followDeadline, 20*time.Millisecond, func() error {
		id, name, err := serverID(ctx, r)
		if err != nil {
			return err
		}
		return check.That(id == db.Master.ServerID() && name == db.Master.Name(), "the resolver must connect to the recorded master")
	})
	require.NoError(t, r.Check(ctx))
	_, rec, err := r.DB()
	require.NoError(t, err)
	assert.Equal(t, int64(1), rec.Term)

	// The handle is the app user's, on the configured database.
	h, _, err := r.DB()
	require.NoError(t, err)
	var user, schema string
	require.NoError(t, h.QueryRowContext(ctx, "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1), DATABASE()").Scan(&user, &schema))
	assert.Equal(t, db.AppUser, user)
	assert.Equal(t, db.Database, schema)

	// A switchover rewrites the record: the resolver follows it.
	replica := db.Replicas[0]
	putMaster(t, st, replica, 2, rev)
	check.For(t, followDeadline, 20*time.Millisecond, func() error {
		id, name, err := serverID(ctx, r)
		if err != nil {
			return err
		}
		return check.That(id == replica.ServerID() && name == replica.Name(), "the resolver must follow the new master")
	})

	// A resolver for another cluster started before its record exists:
	// it has no handle, then follows the record once written.
	other := masterdb.New(masterdb.Options{Store: st, DC: "dc-a1", Cluster: "other", User: db.AppUser, Password: db.AppPassword, Logger: zerolog.Nop()})
	go func() { _ = other.Run(runCtx) }()
	_, _, err = other.DB()
	require.ErrorIs(t, err, masterdb.ErrNoMaster)
	_, err = st.PutMaster(ctx, state.MasterRecord{DC: "dc-a1", Cluster: "other", Instance: db.Master.Name(), Addr: db.Master.Addr(), Term: 1}, 0, nil)
	require.NoError(t, err)
	check.For(t, followDeadline, 20*time.Millisecond, func() error {
		id, _, err := serverID(ctx, other)
		if err != nil {
			return err
		}
		return check.That(id == db.Master.ServerID(), "a record written after Run started is followed")
	})
	id, _, err := serverID(ctx, r)
	require.NoError(t, err)
	require.Equal(t, replica.ServerID(), id, "another cluster's record does not move this resolver")

	// The recorded master dies: the readiness check says so and names it.
	require.NoError(t, replica.Kill())
	check.For(t, followDeadline, 50*time.Millisecond, func() error { return check.That(r.Check(ctx) != nil, "r.Check(ctx) != nil") })
	err = r.Check(ctx)
	assert.Contains(t, err.Error(), replica.Name())
	assert.Contains(t, err.Error(), replica.Addr())

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(followDeadline):
		t.Fatal("Run did not return after its context ended")
	}
	_, _, err = r.DB()
	require.ErrorIs(t, err, masterdb.ErrNoMaster, "a stopped resolver hands out no handle")
}

func TestEndpointValidate(t *testing.T) {
	tests := []struct {
		name  string
		e     masterdb.Endpoint
		field string
	}{
		{"valid", masterdb.Endpoint{Cluster: "main", User: "app"}, ""},
		{"no cluster", masterdb.Endpoint{User: "app"}, "collector.mysql.cluster"},
		{"no user", masterdb.Endpoint{Cluster: "main"}, "collector.mysql.user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate("collector.mysql")
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			require.ErrorIs(t, err, config.ErrInvalid)
		})
	}
}
