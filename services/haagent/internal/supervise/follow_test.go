package supervise_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
	"github.com/drplane/drplane/services/haagent/internal/supervise"
)

// TestSelfFenceBeforeTheFirstCycle: an agent that won the election and lost
// etcd at once, before its first cycle read the topology, is told to fence
// itself. It has followed the topology since before it campaigned, so it
// fences the instances the topology names now: the master is left alone
// while the topology does not list it, and fenced once a topology that
// lists it again has been put. (Before the agent followed the topology,
// SelfFence fenced no instance at all then: TestCutOffAgentFencesItsMaster
// failed so under load, its master writable while the standby took over.)
func TestSelfFenceBeforeTheFirstCycle(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	master := e.DB.Master
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cur, rev, err := e.Store.Topology(ctx)
	require.NoError(t, err)
	without := cur
	cl := without.Clusters[0]
	cl.Instances = cl.Instances[1:]
	require.NotEqual(t, master.Name(), cl.Instances[0].Name)
	without.Clusters = []topology.Cluster{cl}
	_, err = e.Store.PutTopology(ctx, without, rev)
	require.NoError(t, err)

	u := e.DB.Users
	ops := failover.NewOps(failover.Creds{User: u.AdminUser, Password: u.AdminPassword,
		ReplUser: u.ReplUser, ReplPassword: u.ReplPassword}, time.Minute, 2*time.Second)
	t.Cleanup(ops.Close)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	s := supervise.New(supervise.Options{DC: hatest.DC, ID: "agent-1", Store: e.Store,
		Runner: failover.NewRunner(failover.Options{DC: hatest.DC, AgentID: "agent-1", Ops: ops, Store: e.Store, Logger: log}),
		Logger: log})
	fctx, stop := context.WithCancel(ctx)
	known, followed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(followed)
		s.FollowTopology(fctx, known)
	}()
	t.Cleanup(func() {
		stop()
		<-followed
	})
	select {
	case <-known:
	case <-ctx.Done():
		t.Fatal("the topology was never read")
	}

	s.SelfFence(ctx, "test: etcd lost before the first cycle")
	for _, in := range e.DB.Replicas {
		require.True(t, readOnly(t, in), "%s fenced", in.Name())
	}
	require.False(t, readOnly(t, master), "the master is not in the topology followed")

	_, err = e.Store.PutTopology(ctx, cur, -1)
	require.NoError(t, err)
	check.For(t, 10*time.Second, check.Every, func() error {
		s.SelfFence(ctx, "test: etcd lost before the first cycle")
		return check.That(readOnly(t, master), "the master fenced once the topology lists it")
	})
}

// readOnly reads @@read_only as root.
func readOnly(t *testing.T, in *mysqld.Instance) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	db, err := in.Admin(ctx)
	require.NoError(t, err)
	g, err := mysqld.ReadGTIDState(ctx, db)
	require.NoError(t, err)
	return g.ReadOnly
}
