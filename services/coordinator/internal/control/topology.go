// Package control implements the coordinator's gRPC services on top of the etcd
// state store.
package control

import (
	"context"
	"errors"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Topology serves TopologyService.
type Topology struct {
	drplanev1.UnimplementedTopologyServiceServer
	Store *state.Store
	Now   func() time.Time
}

func (s *Topology) topology(ctx context.Context) (topology.Topology, int64, error) {
	t, rev, err := s.Store.Topology(ctx)
	if errors.Is(err, state.ErrNotFound) {
		return t, 0, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology stored in etcd yet")
	}
	if err != nil {
		return t, 0, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read topology from etcd")
	}
	return t, rev, nil
}

// GetTopology returns the stored topology.
func (s *Topology) GetTopology(ctx context.Context, _ *drplanev1.GetTopologyRequest) (*drplanev1.GetTopologyResponse, error) {
	t, rev, err := s.topology(ctx)
	if err != nil {
		return nil, err
	}
	return &drplanev1.GetTopologyResponse{Topology: TopologyToProto(t, rev)}, nil
}

// TopologyToProto converts the model to its API form.
func TopologyToProto(t topology.Topology, rev int64) *drplanev1.Topology {
	out := &drplanev1.Topology{Revision: rev}
	for _, c := range t.Cities {
		out.Cities = append(out.Cities, &drplanev1.City{Name: c.Name})
	}
	for _, dc := range t.DCs {
		out.Dcs = append(out.Dcs, &drplanev1.DataCenter{Name: dc.Name, City: dc.City, State: dcState(dc.StateOf())})
	}
	for _, cl := range t.Clusters {
		pc := &drplanev1.Cluster{Name: cl.Name, Dc: cl.DC}
		for _, in := range cl.Instances {
			pc.Instances = append(pc.Instances, &drplanev1.Instance{Name: in.Name, Addr: in.Addr, Priority: int32(in.Priority), NoMaster: in.NoMaster})
		}
		out.Clusters = append(out.Clusters, pc)
	}
	for _, ks := range t.Keyspaces {
		out.Keyspaces = append(out.Keyspaces, &drplanev1.Keyspace{Name: ks.Name, Database: ks.Database, Table: ks.Table, Tables: ks.Tables,
			ShardKey: ks.ShardKey, Shards: int32(ks.Shards)})
	}
	return out
}

func dcState(s topology.DCState) drplanev1.DCState {
	switch s {
	case topology.DCActive:
		return drplanev1.DCState_DC_STATE_ACTIVE
	case topology.DCDraining:
		return drplanev1.DCState_DC_STATE_DRAINING
	case topology.DCEvacuated:
		return drplanev1.DCState_DC_STATE_EVACUATED
	case topology.DCDown:
		return drplanev1.DCState_DC_STATE_DOWN
	}
	return drplanev1.DCState_DC_STATE_UNSPECIFIED
}

// GetStatus joins the topology with the HA agents' observations, the master
// records and the registered services.
func (s *Topology) GetStatus(ctx context.Context, req *drplanev1.GetStatusRequest) (*drplanev1.GetStatusResponse, error) {
	t, _, err := s.topology(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetDc() != "" {
		if _, ok := t.DC(req.GetDc()); !ok {
			return nil, apierr.InvalidArgument("dc", "unknown DC "+req.GetDc())
		}
	}
	obs, err := s.Store.InstanceStatuses(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read observations from etcd")
	}
	masters, err := s.Store.Masters(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read master records from etcd")
	}
	svcs, err := s.Store.Services(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read services from etcd")
	}
	mems, err := s.Store.Memories(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the HA agents' cluster memories from etcd")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	qs, err := s.Store.Quarantines(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the HA agents' quarantine marks from etcd")
	}
	syncs, err := s.Store.NATSSyncs(ctx, req.GetDc())
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read the NATS sync settings from etcd")
	}
	resp := BuildStatus(t, req.GetDc(), obs, masters, svcs, now())
	addHolds(resp, mems)
	addQuarantines(resp, qs)
	addDurability(resp, syncs)
	return resp, nil
}

// addQuarantines sets the quarantine reason of every quarantined instance.
func addQuarantines(resp *drplanev1.GetStatusResponse, qs []state.Quarantine) {
	why := map[string]string{}
	for _, q := range qs {
		why[q.DC+"/"+q.Cluster+"/"+q.Instance] = q.Reason
	}
	for _, dc := range resp.GetDcs() {
		for _, cl := range dc.GetClusters() {
			for _, in := range cl.GetInstances() {
				if r, ok := why[dc.GetName()+"/"+cl.GetName()+"/"+in.GetName()]; ok {
					if r == "" {
						r = "quarantined"
					}
					in.Quarantine = r
				}
			}
		}
	}
}

type clusterKey struct{ dc, cluster string }

// addHolds sets the failover hold of every cluster the HA agents hold.
func addHolds(resp *drplanev1.GetStatusResponse, mems []state.ClusterMemory) {
	held := map[clusterKey]state.FailoverHold{}
	for _, m := range mems {
		if m.Hold != nil {
			held[clusterKey{m.DC, m.Cluster}] = *m.Hold
		}
	}
	for _, dc := range resp.GetDcs() {
		for _, cl := range dc.GetClusters() {
			if h, ok := held[clusterKey{dc.GetName(), cl.GetName()}]; ok {
				cl.FailoverHold = holdToProto(h)
			}
		}
	}
}

// Cluster health values.
const (
	HealthOK          = "OK"
	HealthDegraded    = "DEGRADED"
	HealthNoMaster    = "NO_MASTER"
	HealthTwoWritable = "TWO_WRITABLE"
)

// BuildStatus assembles the status response; it is pure so it can be tested
// on crafted inputs.
func BuildStatus(t topology.Topology, onlyDC string, obs []state.InstanceStatus, masters []state.MasterRecord,
	svcs []state.ServiceRecord, now time.Time) *drplanev1.GetStatusResponse {
	byInst := map[string]state.InstanceStatus{}
	for _, o := range obs {
		byInst[o.DC+"/"+o.Name] = o
	}
	byCluster := map[clusterKey]state.MasterRecord{}
	for _, m := range masters {
		byCluster[clusterKey{m.DC, m.Cluster}] = m
	}
	resp := &drplanev1.GetStatusResponse{GeneratedAt: timestamppb.New(now)}
	for _, dc := range t.DCs {
		if onlyDC != "" && dc.Name != onlyDC {
			continue
		}
		ds := &drplanev1.DCStatus{Name: dc.Name, City: dc.City, State: dcState(dc.StateOf())}
		for _, cl := range t.ClustersIn(dc.Name) {
			ds.Clusters = append(ds.Clusters, clusterStatus(dc.Name, cl, byInst, byCluster))
		}
		for _, sv := range svcs {
			if sv.DC != dc.Name {
				continue
			}
			ds.Services = append(ds.Services, &drplanev1.ServiceInstance{
				Name: sv.Service, Id: sv.ID, Dc: sv.DC, Addr: sv.HealthAddr, StartedAt: timestamppb.New(sv.StartedAt),
				Version: sv.Version, LogicImplemented: sv.LogicImplemented,
			})
		}
		sort.Slice(ds.Services, func(i, j int) bool {
			a, b := ds.Services[i], ds.Services[j]
			return a.Name < b.Name || (a.Name == b.Name && a.Id < b.Id)
		})
		resp.Dcs = append(resp.Dcs, ds)
	}
	return resp
}

func clusterStatus(dc string, cl topology.Cluster, byInst map[string]state.InstanceStatus,
	byCluster map[clusterKey]state.MasterRecord) *drplanev1.ClusterStatus {
	cs := &drplanev1.ClusterStatus{Name: cl.Name}
	writable, broken := 0, 0
	observedMaster := ""
	for _, in := range cl.Instances {
		o, seen := byInst[dc+"/"+in.Name]
		is := &drplanev1.InstanceStatus{Name: in.Name, Addr: in.Addr, Role: drplanev1.Role_ROLE_UNKNOWN}
		if !seen {
			is.LastError = "no observation (is an HA agent running in this DC?)"
			broken++
			cs.Instances = append(cs.Instances, is)
			continue
		}
		is.Role = role(o.Role)
		is.Reachable, is.ReadOnly = o.Reachable, o.ReadOnly
		is.GtidBinlogPos, is.GtidSlavePos, is.GtidCurrentPos = o.GTIDBinlogPos, o.GTIDSlavePos, o.GTIDCurrentPos
		is.IoRunning, is.SqlRunning, is.SecondsBehindMaster = o.IORunning, o.SQLRunning, o.SecondsBehind
		is.LastError, is.SourceHost = o.LastError, o.SourceHost
		is.SemiSyncMaster, is.SemiSyncClients = o.SemiSyncMaster, int32(o.SemiSyncClients)
		is.SyncBinlog, is.InnodbFlushLogAtTrxCommit = int32Ptr(o.SyncBinlog), int32Ptr(o.FlushLogAtTrxCommit)
		is.SemiSyncWaitPoint = o.SemiSyncWaitPoint
		is.ObservedAt, is.ObservedBy = timestamppb.New(o.ObservedAt), o.ObservedBy
		if o.Reachable && !o.ReadOnly {
			writable++
			observedMaster = in.Name
		}
		if !o.Reachable || (o.Role == state.RoleReplica && (!o.IORunning || !o.SQLRunning)) {
			broken++
		}
		cs.Instances = append(cs.Instances, is)
	}
	cs.Master = observedMaster
	if m, ok := byCluster[clusterKey{dc, cl.Name}]; ok {
		cs.Master = m.Instance
	}
	switch {
	case writable > 1:
		cs.Health = HealthTwoWritable
	case writable == 0:
		cs.Health = HealthNoMaster
	case broken > 0 || (cs.Master != observedMaster):
		cs.Health = HealthDegraded
	default:
		cs.Health = HealthOK
	}
	return cs
}

func role(r state.Role) drplanev1.Role {
	switch r {
	case state.RoleMaster:
		return drplanev1.Role_ROLE_MASTER
	case state.RoleReplica:
		return drplanev1.Role_ROLE_REPLICA
	}
	return drplanev1.Role_ROLE_UNKNOWN
}
