package control_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/control"
)

const nowUnix = 1748779200 // 2025-06-01T12:00:00Z

var now = time.Unix(nowUnix, 0).UTC()

// twoDCs has cluster "main" in two DCs, three instances in dc-a1.
func twoDCs() topology.Topology {
	return topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-b1", City: "city-b", State: topology.DCDraining}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: "dc-a1", Instances: []topology.Instance{
				{Name: "a1-db1", Addr: "127.0.0.1:3306"}, {Name: "a1-db2", Addr: "127.0.0.1:3307"}, {Name: "a1-db3", Addr: "127.0.0.1:3308"},
			}},
			{Name: "main", DC: "dc-b1", Instances: []topology.Instance{{Name: "b1-db1", Addr: "127.0.0.1:4306"}}},
		},
	}
}

func masterObs(name string) state.InstanceStatus {
	return state.InstanceStatus{DC: "dc-a1", Cluster: "main", Name: name, Role: state.RoleMaster, Reachable: true,
		GTIDBinlogPos: "0-1-10", SemiSyncMaster: true, SemiSyncClients: 2, ObservedAt: now, ObservedBy: "agent-1"}
}

func replicaObs(name string) state.InstanceStatus {
	lag := int64(0)
	return state.InstanceStatus{DC: "dc-a1", Cluster: "main", Name: name, Role: state.RoleReplica, Reachable: true,
		ReadOnly: true, IORunning: true, SQLRunning: true, SecondsBehind: &lag, GTIDSlavePos: "0-1-10",
		SourceHost: "127.0.0.1:3306", ObservedAt: now, ObservedBy: "agent-1"}
}

// healthy is a master and two running replicas in dc-a1.
func healthy() []state.InstanceStatus {
	return []state.InstanceStatus{masterObs("a1-db1"), replicaObs("a1-db2"), replicaObs("a1-db3")}
}

func TestBuildStatusClusterHealth(t *testing.T) {
	rec := []state.MasterRecord{{DC: "dc-a1", Cluster: "main", Instance: "a1-db1", Term: 1}}
	tests := []struct {
		name    string
		obs     func() []state.InstanceStatus
		masters []state.MasterRecord
		health  string
		master  string
	}{
		{name: "healthy", obs: healthy, masters: rec, health: control.HealthOK, master: "a1-db1"},
		{name: "healthy without a master record uses the observed master", obs: healthy, health: control.HealthOK, master: "a1-db1"},
		{
			name: "no writable instance", masters: rec, health: control.HealthNoMaster, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[0].ReadOnly = true
				return o
			},
		},
		{
			name: "master unreachable", health: control.HealthNoMaster, master: "",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[0] = state.InstanceStatus{DC: "dc-a1", Cluster: "main", Name: "a1-db1", Role: state.RoleUnknown, LastError: "connection refused"}
				return o
			},
		},
		{
			name: "two writable", masters: rec, health: control.HealthTwoWritable, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[2].ReadOnly = false
				return o
			},
		},
		{
			name: "replica IO thread stopped", masters: rec, health: control.HealthDegraded, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[1].IORunning = false
				o[1].SecondsBehind = nil
				o[1].LastError = "error reconnecting to master"
				return o
			},
		},
		{
			name: "replica SQL thread stopped", masters: rec, health: control.HealthDegraded, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[2].SQLRunning = false
				return o
			},
		},
		{
			name: "replica unreachable", masters: rec, health: control.HealthDegraded, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()
				o[2] = state.InstanceStatus{DC: "dc-a1", Cluster: "main", Name: "a1-db3", Role: state.RoleUnknown, LastError: "i/o timeout"}
				return o
			},
		},
		{
			name: "missing observation", masters: rec, health: control.HealthDegraded, master: "a1-db1",
			obs: func() []state.InstanceStatus { return healthy()[:2] },
		},
		{
			name: "master record disagrees with the writable instance", health: control.HealthDegraded, master: "a1-db2",
			masters: []state.MasterRecord{{DC: "dc-a1", Cluster: "main", Instance: "a1-db2", Term: 2}},
			obs:     healthy,
		},
		{
			name: "another DC's observations do not count", masters: rec, health: control.HealthDegraded, master: "a1-db1",
			obs: func() []state.InstanceStatus {
				o := healthy()[:2]
				stray := replicaObs("a1-db3")
				stray.DC = "dc-b1"
				return append(o, stray)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := control.BuildStatus(twoDCs(), "dc-a1", tt.obs(), tt.masters, nil, now)
			require.Len(t, resp.Dcs, 1)
			require.Len(t, resp.Dcs[0].Clusters, 1)
			cs := resp.Dcs[0].Clusters[0]
			assert.Equal(t, "main", cs.Name)
			assert.Equal(t, tt.health, cs.Health)
			assert.Equal(t, tt.master, cs.Master)
			require.Len(t, cs.Instances, 3, "every instance of the topology is listed, observed or not")
		})
	}
}

func TestBuildStatusInstanceDetails(t *testing.T) {
	obs := healthy()[:2] // a1-db3 not observed
	obs[1].SecondsBehind = new(int64)
	*obs[1].SecondsBehind = 4
	resp := control.BuildStatus(twoDCs(), "", obs, nil, nil, now)
	require.Len(t, resp.Dcs, 2)
	assert.Equal(t, now, resp.GeneratedAt.AsTime())

	a1 := resp.Dcs[0]
	assert.Equal(t, "dc-a1", a1.Name)
	assert.Equal(t, "city-a", a1.City)
	assert.Equal(t, drplanev1.DCState_DC_STATE_ACTIVE, a1.State, "an unset state is ACTIVE")
	ins := a1.Clusters[0].Instances

	m := ins[0]
	assert.Equal(t, "a1-db1", m.Name)
	assert.Equal(t, "127.0.0.1:3306", m.Addr, "the address comes from the topology")
	assert.Equal(t, drplanev1.Role_ROLE_MASTER, m.Role)
	assert.True(t, m.Reachable)
	assert.False(t, m.ReadOnly)
	assert.True(t, m.SemiSyncMaster)
	assert.Equal(t, int32(2), m.SemiSyncClients)
	assert.Equal(t, "0-1-10", m.GtidBinlogPos)
	assert.Equal(t, "agent-1", m.ObservedBy)
	assert.Equal(t, now, m.ObservedAt.AsTime())

	r := ins[1]
	assert.Equal(t, drplanev1.Role_ROLE_REPLICA, r.Role)
	assert.True(t, r.IoRunning)
	assert.True(t, r.SqlRunning)
	require.NotNil(t, r.SecondsBehindMaster)
	assert.Equal(t, int64(4), *r.SecondsBehindMaster)
	assert.Equal(t, "127.0.0.1:3306", r.SourceHost)

	missing := ins[2]
	assert.Equal(t, "a1-db3", missing.Name)
	assert.Equal(t, drplanev1.Role_ROLE_UNKNOWN, missing.Role)
	assert.False(t, missing.Reachable)
	assert.Contains(t, missing.LastError, "no observation")
	assert.Nil(t, missing.ObservedAt)

	b1 := resp.Dcs[1]
	assert.Equal(t, "dc-b1", b1.Name)
	assert.Equal(t, drplanev1.DCState_DC_STATE_DRAINING, b1.State)
	assert.Equal(t, control.HealthNoMaster, b1.Clusters[0].Health, "an unobserved cluster has no master")
}

func TestBuildStatusServicesAndFilter(t *testing.T) {
	started := now.Add(-time.Hour)
	svcs := []state.ServiceRecord{
		{Service: "reship", ID: "r-1", DC: "dc-a1", HealthAddr: "127.0.0.1:9003", StartedAt: started, Version: "v"},
		{Service: "haagent", ID: "h-2", DC: "dc-a1", HealthAddr: "127.0.0.1:9002", StartedAt: started, Version: "v"},
		{Service: "haagent", ID: "h-1", DC: "dc-a1", HealthAddr: "127.0.0.1:9001", StartedAt: started, Version: "v", LogicImplemented: true},
		{Service: "haagent", ID: "hb-1", DC: "dc-b1", HealthAddr: "127.0.0.1:9101", StartedAt: started, Version: "v"},
	}
	resp := control.BuildStatus(twoDCs(), "", healthy(), nil, svcs, now)
	require.Len(t, resp.Dcs, 2)
	var got []string
	for _, s := range resp.Dcs[0].Services {
		got = append(got, s.Name+"/"+s.Id)
	}
	assert.Equal(t, []string{"haagent/h-1", "haagent/h-2", "reship/r-1"}, got, "services sorted by name then id, only the DC's own")
	first := resp.Dcs[0].Services[0]
	assert.Equal(t, "127.0.0.1:9001", first.Addr)
	assert.True(t, first.LogicImplemented)
	assert.Equal(t, started, first.StartedAt.AsTime())
	require.Len(t, resp.Dcs[1].Services, 1)
	assert.Equal(t, "hb-1", resp.Dcs[1].Services[0].Id)

	only := control.BuildStatus(twoDCs(), "dc-b1", nil, nil, svcs, now)
	require.Len(t, only.Dcs, 1)
	assert.Equal(t, "dc-b1", only.Dcs[0].Name)

	none := control.BuildStatus(twoDCs(), "dc-nowhere", nil, nil, svcs, now)
	assert.Empty(t, none.Dcs)
}

func TestTopologyToProto(t *testing.T) {
	topo := twoDCs()
	topo.Clusters[0].Instances[2].Priority = 5
	topo.Clusters[0].Instances[2].NoMaster = true
	topo.Keyspaces = []topology.Keyspace{{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64}}
	p := control.TopologyToProto(topo, 42)
	assert.Equal(t, int64(42), p.Revision)
	require.Len(t, p.Cities, 2)
	require.Len(t, p.Dcs, 2)
	assert.Equal(t, drplanev1.DCState_DC_STATE_DRAINING, p.Dcs[1].State)
	require.Len(t, p.Clusters, 2)
	in := p.Clusters[0].Instances[2]
	assert.Equal(t, int32(5), in.Priority)
	assert.True(t, in.NoMaster)
	require.Len(t, p.Keyspaces, 1)
	assert.Equal(t, int32(64), p.Keyspaces[0].Shards)
	assert.Equal(t, "user_id", p.Keyspaces[0].ShardKey)
}
