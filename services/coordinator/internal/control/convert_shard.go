package control

import (
	"sort"
	"strconv"

	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/routes"
)

func shardStateToProto(s shardmap.State) drplanev1.ShardState {
	switch s {
	case shardmap.Active:
		return drplanev1.ShardState_SHARD_STATE_ACTIVE
	case shardmap.Frozen:
		return drplanev1.ShardState_SHARD_STATE_FROZEN
	case shardmap.Moving:
		return drplanev1.ShardState_SHARD_STATE_MOVING
	}
	return drplanev1.ShardState_SHARD_STATE_UNSPECIFIED
}

func masterToProto(m routes.Master) *drplanev1.MasterEndpoint {
	return &drplanev1.MasterEndpoint{Dc: m.DC, Cluster: m.Cluster, Instance: m.Instance, Addr: m.Addr, Term: m.Term}
}

// routeToProto is the API form of a route of keyspace e, with the owner
// DC's master of the keyspace's cluster when one is recorded.
func routeToProto(e *routes.Entry, r shardmap.Route) *drplanev1.Route {
	out := &drplanev1.Route{
		Keyspace: e.Keyspace.Name, Shard: int32(r.Shard), OwnerDc: r.Owner, BackupDc: r.Backup, //nolint:gosec // ids are below shardmap.MaxShards
		State: shardStateToProto(r.State), ShardRevision: r.Revision, MapRevision: r.MapRevision,
	}
	if m, ok := e.Master(r.Owner); ok {
		out.Master = masterToProto(m)
	}
	return out
}

func shardToProto(s shardmap.Shard) *drplanev1.Shard {
	return &drplanev1.Shard{
		Id: int32(s.ID), Lo: strconv.FormatUint(s.Lo, 10), Hi: strconv.FormatUint(s.Hi, 10), //nolint:gosec // ids are below shardmap.MaxShards
		OwnerDc: s.Owner, BackupDc: s.Backup, State: shardStateToProto(s.State), Revision: s.Revision,
		HomeDc: s.HomeDC(), FrozenBy: s.FrozenBy, Fences: fencesToProto(s.Fences),
	}
}

func fencesToProto(fs []shardmap.Fence) []*drplanev1.HandoffFence {
	if len(fs) == 0 {
		return nil
	}
	out := make([]*drplanev1.HandoffFence, len(fs))
	for i, f := range fs {
		out[i] = &drplanev1.HandoffFence{Dc: f.DC, Watermark: f.Watermark, OperationId: f.OperationID, Revision: f.Revision}
	}
	return out
}

// tableToProto is keyspace e's routing table: its shards in range order and
// the masters of its cluster in DC order.
func tableToProto(e *routes.Entry) *drplanev1.RoutingTable {
	t := &drplanev1.RoutingTable{
		Keyspace: e.Keyspace.Name, Function: string(e.Table.Function()), Cluster: e.Keyspace.Cluster,
		MapRevision: e.Map.Revision, Shards: make([]*drplanev1.Shard, 0, e.Table.Len()),
	}
	shards := e.Map.Clone().Shards
	sort.Slice(shards, func(i, j int) bool { return shards[i].Lo < shards[j].Lo })
	for _, s := range shards {
		t.Shards = append(t.Shards, shardToProto(s))
	}
	dcs := make([]string, 0, len(e.Masters))
	for dc := range e.Masters {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	for _, dc := range dcs {
		t.Masters = append(t.Masters, masterToProto(e.Masters[dc]))
	}
	return t
}
