package observe_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/haagent/internal/observe"
)

const (
	pollInterval = 200 * time.Millisecond
	seeDeadline  = 15 * time.Second
)

// metric returns the value of the gauge or counter name with the given
// labels, or -1 when the registry has no such series.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// run starts ob.Run and returns a function that stops it and returns Run's
// result; it is also called at cleanup.
func run(t *testing.T, ob *observe.Observer) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(seeDeadline):
				t.Error("Run did not return after its context ended")
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func byName(sts []state.InstanceStatus) map[string]state.InstanceStatus {
	out := map[string]state.InstanceStatus{}
	for _, s := range sts {
		out[s.Name] = s
	}
	return out
}

func TestObserverPublishesRolesAndUnreachable(t *testing.T) {
	cli := harness.EtcdClient(t)
	st := state.New(cli, "")
	// The master runs with sync_binlog=1, the replicas with MariaDB's 0.
	db := harness.StartMariaDB(t, harness.MariaDBOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	_, err := db.AdminDB(db.Master).ExecContext(ctx, "SET GLOBAL sync_binlog = 1")
	require.NoError(t, err)

	master, r1, r2 := db.Master, db.Replicas[0], db.Replicas[1]
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: "dc-a1", Instances: []topology.Instance{
				{Name: master.Name(), Addr: master.Addr()}, {Name: r1.Name(), Addr: r1.Addr()}, {Name: r2.Name(), Addr: r2.Addr()},
			}},
			// Another DC's instances are not this observer's business.
			{Name: "main", DC: "dc-a2", Instances: []topology.Instance{{Name: "a2-db1", Addr: "127.0.0.1:1"}}},
		},
	}
	_, err = st.PutTopology(ctx, topo, 0)
	require.NoError(t, err)
	lease, err := cli.Grant(ctx, 60)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	ob := observe.New(observe.Options{
		DC: "dc-a1", ID: "agent-test", User: db.Users.AdminUser, Password: db.Users.AdminPassword,
		Interval: pollInterval, Republish: time.Hour, Store: st,
		Lease: func() clientv3.LeaseID { return lease.ID }, Logger: zerolog.Nop(), Registry: reg,
	})
	stop := run(t, ob)

	// After the first poll every instance of dc-a1 has an observation.
	var seen map[string]state.InstanceStatus
	check.For(t, seeDeadline, 20*time.Millisecond, func() error {
		sts, err := st.InstanceStatuses(ctx, "dc-a1")
		if err != nil || len(sts) != 3 {
			return check.That(false, "every instance is published")
		}
		seen = byName(sts)
		return nil
	})

	m := seen[master.Name()]
	assert.Equal(t, state.RoleMaster, m.Role)
	assert.True(t, m.Reachable)
	assert.False(t, m.ReadOnly)
	assert.True(t, m.SemiSyncMaster)
	assert.Equal(t, 2, m.SemiSyncClients)
	if assert.NotNil(t, m.SyncBinlog) && assert.NotNil(t, m.FlushLogAtTrxCommit) {
		assert.Equal(t, 1, *m.SyncBinlog)
		assert.Equal(t, 1, *m.FlushLogAtTrxCommit)
	}
	assert.Equal(t, "AFTER_SYNC", m.SemiSyncWaitPoint)
	assert.NotEmpty(t, m.GTIDBinlogPos)
	assert.Empty(t, m.LastError)
	assert.False(t, m.Refused)
	assert.Equal(t, "dc-a1", m.DC)
	assert.Equal(t, "main", m.Cluster)
	assert.Equal(t, master.Addr(), m.Addr)
	assert.Equal(t, "agent-test", m.ObservedBy)
	assert.WithinDuration(t, time.Now(), m.ObservedAt, time.Minute)
	for _, r := range db.Replicas {
		o := seen[r.Name()]
		assert.Equal(t, state.RoleReplica, o.Role, r.Name())
		assert.True(t, o.Reachable, r.Name())
		assert.True(t, o.ReadOnly, r.Name())
		assert.True(t, o.IORunning, r.Name())
		assert.True(t, o.SQLRunning, r.Name())
		assert.Equal(t, master.Addr(), o.SourceHost, r.Name())
		assert.NotNil(t, o.SecondsBehind, r.Name())
		assert.Equal(t, m.GTIDBinlogPos, o.GTIDSlavePos, "%s applied what the master has", r.Name())
		if assert.NotNil(t, o.SyncBinlog, r.Name()) {
			assert.Equal(t, 0, *o.SyncBinlog, r.Name())
		}
	}
	other, err := st.InstanceStatuses(ctx, "dc-a2")
	require.NoError(t, err)
	assert.Empty(t, other, "the observer polls only its own DC")

	// Observations live on the given lease.
	kv, err := cli.Get(ctx, st.Key("status", "dc-a1", "main", master.Name()))
	require.NoError(t, err)
	require.Len(t, kv.Kvs, 1)
	assert.Equal(t, int64(lease.ID), kv.Kvs[0].Lease)

	// Unchanged observations are not rewritten on every poll (Republish is an
	// hour here): after three more polls the key has the same revision.
	modRev := kv.Kvs[0].ModRevision
	polls := metric(t, reg, "drplane_haagent_polls_total", map[string]string{"instance": master.Name(), "outcome": "ok"})
	require.Positive(t, polls)
	check.For(t, seeDeadline, 20*time.Millisecond, func() error {
		return check.That(metric(t, reg, "drplane_haagent_polls_total", map[string]string{"instance": master.Name(), "outcome": "ok"}) >= polls+3, "metric(t, reg, \"drplane_haagent_polls_total\", map[string]string{\"instance\": master.Name(), \"outcome\": \"ok\"}) = %v, want >= polls+3", metric(t, reg, "drplane_haagent_polls_total", map[string]string{"instance": master.Name(), "outcome": "ok"}))
	})
	kv, err = cli.Get(ctx, st.Key("status", "dc-a1", "main", master.Name()))
	require.NoError(t, err)
	assert.Equal(t, modRev, kv.Kvs[0].ModRevision, "an unchanged observation must not be republished before Republish")
	assert.Equal(t, 1.0, metric(t, reg, "drplane_haagent_instance_reachable", map[string]string{"instance": r2.Name()}))

	// A replica dies: it is published unreachable, with the error, and as
	// refusing connections (a pooled connection may fail otherwise first).
	require.NoError(t, r2.Kill())
	var dead state.InstanceStatus
	check.For(t, seeDeadline, 20*time.Millisecond, func() error {
		sts, err := st.InstanceStatuses(ctx, "dc-a1")
		if err != nil {
			return check.That(false, "a killed replica must be published unreachable")
		}
		dead = byName(sts)[r2.Name()]
		return check.That(!dead.Reachable && dead.Refused, "a killed replica must be published unreachable, refusing connections (last: %+v)", dead)
	})
	assert.Equal(t, state.RoleUnknown, dead.Role)
	assert.NotEmpty(t, dead.LastError)
	assert.Nil(t, dead.SyncBinlog, "an unreachable instance's settings are not known")
	assert.Equal(t, r2.Addr(), dead.Addr)
	assert.Equal(t, 0.0, metric(t, reg, "drplane_haagent_instance_reachable", map[string]string{"instance": r2.Name()}))
	assert.Positive(t, metric(t, reg, "drplane_haagent_polls_total", map[string]string{"instance": r2.Name(), "outcome": "unreachable"}))

	// The master notices its semi-sync client went away.
	check.For(t, seeDeadline, 20*time.Millisecond, func() error {
		sts, err := st.InstanceStatuses(ctx, "dc-a1")
		if err != nil {
			return check.That(false, "the master's observation follows its semi-sync clients")
		}
		m := byName(sts)[master.Name()]
		return check.That(m.Reachable && m.Role == state.RoleMaster && m.SemiSyncClients == 1, "the master's observation follows its semi-sync clients")
	})
	still := byName(mustStatuses(t, st, "dc-a1"))[r1.Name()]
	assert.True(t, still.Reachable && still.IORunning && still.SQLRunning, "the other replica is unaffected")

	require.NoError(t, stop(), "Run returns nil when its context ends")
}

func mustStatuses(t *testing.T, st *state.Store, dc string) []state.InstanceStatus {
	t.Helper()
	sts, err := st.InstanceStatuses(t.Context(), dc)
	require.NoError(t, err)
	return sts
}

func TestObserverPicksUpTopologyLater(t *testing.T) {
	cli := harness.EtcdClient(t)
	st := state.New(cli, "")
	reg := prometheus.NewRegistry()
	ob := observe.New(observe.Options{
		DC: "dc-a1", ID: "agent-test", User: "nobody", Interval: 50 * time.Millisecond, Republish: time.Hour, Store: st,
		Lease: func() clientv3.LeaseID { return clientv3.NoLease }, Logger: zerolog.Nop(), Registry: reg,
	})
	stop := run(t, ob)

	// Started without a topology, it keeps polling etcd for one. Nothing
	// listens on the instance's address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = st.PutTopology(t.Context(), topology.Topology{
		Cities:   []topology.City{{Name: "city-a"}},
		DCs:      []topology.DC{{Name: "dc-a1", City: "city-a"}},
		Clusters: []topology.Cluster{{Name: "main", DC: "dc-a1", Instances: []topology.Instance{{Name: "gone", Addr: addr}}}},
	}, 0)
	require.NoError(t, err)

	var got state.InstanceStatus
	check.For(t, seeDeadline, 20*time.Millisecond, func() error {
		sts, err := st.InstanceStatuses(t.Context(), "dc-a1")
		if err != nil || len(sts) != 1 {
			return check.That(false, "a topology stored after start is observed")
		}
		got = sts[0]
		return nil
	})
	assert.Equal(t, "gone", got.Name)
	assert.False(t, got.Reachable)
	assert.Equal(t, state.RoleUnknown, got.Role)
	assert.Contains(t, got.LastError, "connection refused")
	assert.Equal(t, 0.0, metric(t, reg, "drplane_haagent_instance_reachable", map[string]string{"cluster": "main", "instance": "gone"}))
	require.NoError(t, stop())
}
