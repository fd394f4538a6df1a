package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

const opTimeout = 10 * time.Second

// newStore starts a one-member etcd and returns a store under a test root.
func newStore(t *testing.T) *state.Store {
	t.Helper()
	return state.New(harness.EtcdClient(t), "/test/"+t.Name())
}

func opCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sampleTopology() topology.Topology {
	return topology.Topology{
		Cities: []topology.City{{Name: "city-a"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}},
		Clusters: []topology.Cluster{{Name: "main", DC: "dc-a1", Instances: []topology.Instance{
			{Name: "a1-db1", Addr: "127.0.0.1:3306"},
			{Name: "a1-db2", Addr: "127.0.0.1:3307"},
		}}},
		Keyspaces: []topology.Keyspace{{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64}},
	}
}

func TestTopologyRoundTripWithCAS(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)

	_, _, err := st.Topology(ctx)
	require.ErrorIs(t, err, state.ErrNotFound, "a fresh keyspace has no topology")

	first := sampleTopology()
	rev1, err := st.PutTopology(ctx, first, 0)
	require.NoError(t, err)
	require.Positive(t, rev1)

	got, rev, err := st.Topology(ctx)
	require.NoError(t, err)
	assert.Equal(t, rev1, rev, "Topology returns the revision Put returned")
	assert.Equal(t, first, got)

	// PrevRev 0 means "must not exist": a second create loses.
	_, err = st.PutTopology(ctx, first, 0)
	require.ErrorIs(t, err, state.ErrConflict)

	second := sampleTopology()
	second.DCs[0].State = topology.DCDraining
	rev2, err := st.PutTopology(ctx, second, rev1)
	require.NoError(t, err)
	require.Greater(t, rev2, rev1)

	// A writer that read rev1 is now stale.
	stale := sampleTopology()
	stale.Clusters[0].Instances[1].Priority = 9
	_, err = st.PutTopology(ctx, stale, rev1)
	require.ErrorIs(t, err, state.ErrConflict)
	require.NotErrorIs(t, err, state.ErrFenced, "no fence was involved")

	// An invalid topology is rejected before it reaches etcd, even with the
	// right revision, and the stored one stays.
	bad := sampleTopology()
	bad.Clusters[0].DC = "dc-nowhere"
	_, err = st.PutTopology(ctx, bad, rev2)
	require.ErrorIs(t, err, topology.ErrInvalid)
	var verr *topology.ValidationError
	require.ErrorAs(t, err, &verr)
	assert.Equal(t, "clusters[0].dc", verr.Errs[0].Field)

	got, rev, err = st.Topology(ctx)
	require.NoError(t, err)
	assert.Equal(t, rev2, rev, "failed writes must not bump the revision")
	assert.Equal(t, second, got)

	// Unconditional writes still work.
	_, err = st.PutTopology(ctx, first, -1)
	require.NoError(t, err)
	got, _, err = st.Topology(ctx)
	require.NoError(t, err)
	assert.Equal(t, first, got)
}

func TestStoreKeysStayUnderRoot(t *testing.T) {
	cli := harness.EtcdClient(t)
	ctx := opCtx(t)
	a, b := state.New(cli, "/one/"), state.New(cli, "/two")
	assert.Equal(t, "/one/topology", a.Key("topology"))
	assert.Equal(t, "/two/services/dc-a1/", b.Prefix("services", "dc-a1"))
	assert.Equal(t, state.DefaultRoot+"/masters/dc/c", state.New(cli, "").Key("masters", "dc", "c"))

	_, err := a.PutTopology(ctx, sampleTopology(), 0)
	require.NoError(t, err)
	_, _, err = b.Topology(ctx)
	require.ErrorIs(t, err, state.ErrNotFound, "stores with different roots do not see each other")
}

func TestServiceRegistrationVanishesWithLease(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	cli := st.Client()

	lease, err := cli.Grant(ctx, 60)
	require.NoError(t, err)
	other, err := cli.Grant(ctx, 60)
	require.NoError(t, err)

	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []state.ServiceRecord{
		{Service: "haagent", ID: "agent-1", DC: "dc-a1", HealthAddr: "127.0.0.1:9001", StartedAt: started, Version: "t"},
		{Service: "coordinator", ID: "coord-1", DC: "dc-a1", HealthAddr: "127.0.0.1:9002", APIAddr: "127.0.0.1:7700", StartedAt: started, Version: "t", LogicImplemented: true},
	}
	for _, r := range recs {
		require.NoError(t, st.PutService(ctx, r, lease.ID))
	}
	survivor := state.ServiceRecord{Service: "reship", ID: "reship-1", DC: "dc-b1", StartedAt: started}
	require.NoError(t, st.PutService(ctx, survivor, other.ID))

	got, err := st.Services(ctx, "dc-a1")
	require.NoError(t, err)
	// Key order: services/<dc>/<service>/<id>, so coordinator sorts first.
	require.Equal(t, []state.ServiceRecord{recs[1], recs[0]}, got)
	all, err := st.Services(ctx, "")
	require.NoError(t, err)
	require.Len(t, all, 3)

	_, err = cli.Revoke(ctx, lease.ID)
	require.NoError(t, err)
	check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
		got, err := st.Services(ctx, "dc-a1")
		if err != nil {
			return err
		}
		return check.That(len(got) == 0, "registrations on a revoked lease must disappear")
	})

	all, err = st.Services(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []state.ServiceRecord{survivor}, all, "other leases are not affected")
}

func TestInstanceStatusOnLease(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	lease, err := st.Client().Grant(ctx, 60)
	require.NoError(t, err)

	lag := int64(3)
	obs := state.InstanceStatus{
		DC: "dc-a1", Cluster: "main", Name: "a1-db2", Addr: "127.0.0.1:3307", Role: state.RoleReplica,
		Reachable: true, ReadOnly: true, IORunning: true, SQLRunning: true, SecondsBehind: &lag,
		GTIDSlavePos: "0-1-42", ObservedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), ObservedBy: "agent-1",
	}
	require.NoError(t, st.PutInstanceStatus(ctx, obs, lease.ID))
	got, err := st.InstanceStatuses(ctx, "dc-a1")
	require.NoError(t, err)
	require.Equal(t, []state.InstanceStatus{obs}, got)
	none, err := st.InstanceStatuses(ctx, "dc-b1")
	require.NoError(t, err)
	require.Empty(t, none)

	_, err = st.Client().Revoke(ctx, lease.ID)
	require.NoError(t, err)
	check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
		got, err := st.InstanceStatuses(ctx, "")
		if err != nil {
			return err
		}
		return check.That(len(got) == 0, "len(got) = %v, want 0", len(got))
	})
}

func TestGetReportsUndecodableValues(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	_, err := st.Client().Put(ctx, st.Key("topology"), "{not json")
	require.NoError(t, err)
	_, _, err = st.Topology(ctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, state.ErrNotFound), "a corrupt value is not a missing one: %v", err)
	require.Contains(t, err.Error(), st.Key("topology"))
}
