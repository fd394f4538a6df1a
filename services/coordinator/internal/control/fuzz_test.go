package control

import (
	"context"
	"strconv"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/routes"
)

// fuzzShards is a ShardService over a fixed routing state (no etcd): the
// orders keyspace (HASH, 16 shards) and users (RANGE, 2 shards) over three
// DCs.
func fuzzShards(t testing.TB) *Shards {
	t.Helper()
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Keyspaces: []topology.Keyspace{
			{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 16},
			{Name: "users", Cluster: "main", Database: "shop", Table: "users", ShardKey: "id", Shards: 2},
		},
	}
	for i, dc := range topo.DCs {
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: "127.0.0.1:" + strconv.Itoa(3306+i)}}})
	}
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	var maps []shardmap.Map
	for _, ks := range topo.Keyspaces {
		m := shardmap.New(ks, topo)
		if ks.Name == "users" {
			m.Function = shardmap.Range
		}
		m.Revision = 10
		for i := range m.Shards {
			m.Shards[i].Revision = 10
		}
		maps = append(maps, m)
	}
	masters := map[string]routes.Master{}
	for _, cl := range topo.Clusters {
		masters[cl.DC] = routes.Master{MasterRecord: state.MasterRecord{DC: cl.DC, Cluster: cl.Name, Instance: cl.Instances[0].Name}, Revision: 5}
	}
	cache := routes.New(routes.Options{Logger: zerolog.Nop()})
	cache.Replace(&topo, maps, masters)
	return NewShards(ShardsOptions{Cache: cache, Logger: zerolog.Nop()})
}

// gatewayDecode decodes a REST body the way the gateway does (its JSON
// marshaler), and returns the error the gateway would send for a body that
// does not decode.
func gatewayDecode(data []byte, m proto.Message) error {
	jp := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	if err := jp.Unmarshal(data, m); err != nil {
		return apierr.ToStatus(status.Errorf(codes.InvalidArgument, "%v", err)).Err()
	}
	return nil
}

// checkAPIError fails unless err is nil or an API error of the catalog that
// blames the request (never INTERNAL).
func checkAPIError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	e, ok := apierr.FromError(err)
	if !ok {
		t.Fatalf("%s: not an API error: %v", what, err)
	}
	switch e.Code {
	case drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND,
		drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
	default:
		t.Fatalf("%s: code %s for a bad request: %v", what, apierr.Reason(e.Code), err)
	}
	if apierr.ToStatus(err).Code() == codes.Internal {
		t.Fatalf("%s: renders as INTERNAL: %v", what, err)
	}
}

// FuzzDecodeRequests feeds arbitrary bytes to the gateway's JSON decoding
// of RouteRequest, MoveShardRequest and SetShardStateRequest, and what
// decodes to the server's validation: nothing panics, and every refusal is
// a catalog error that blames the request.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		`{"keyspace":"orders","key":"42"}`,
		`{"keyspace":"users","key":"18446744073709551616"}`,
		`{"keyspace":"orders","shard":3,"owner_dc":"dc-b1","backup_dc":"dc-a1","reason":"r"}`,
		`{"keyspace":"orders","shard":-7,"ownerDc":"dc-b1"}`,
		`{"keyspace":"orders","shard":2,"state":"SHARD_STATE_FROZEN","reason":"r"}`,
		`{"keyspace":"orders","shard":2,"state":99}`,
		`{"shard":"2147483648"}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	s := fuzzShards(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		var route drplanev1.RouteRequest
		if err := gatewayDecode(data, &route); err != nil {
			checkAPIError(t, "decode RouteRequest", err)
		} else {
			_, err := s.Route(ctx, &route)
			checkAPIError(t, "Route", err)
		}
		var move drplanev1.MoveShardRequest
		if err := gatewayDecode(data, &move); err != nil {
			checkAPIError(t, "decode MoveShardRequest", err)
		} else {
			_, err := s.checkMove(&move)
			checkAPIError(t, "MoveShard", err)
		}
		var set drplanev1.SetShardStateRequest
		if err := gatewayDecode(data, &set); err != nil {
			checkAPIError(t, "decode SetShardStateRequest", err)
		} else {
			_, err := s.checkShardState(&set)
			checkAPIError(t, "SetShardState", err)
		}
	})
}
