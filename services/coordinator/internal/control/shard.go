package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/evac"
	"github.com/drplane/drplane/services/coordinator/internal/handoff"
	"github.com/drplane/drplane/services/coordinator/internal/ops"
	"github.com/drplane/drplane/services/coordinator/internal/routes"
)

// MaxBatchKeys bounds the keys of one BatchRoute call.
const MaxBatchKeys = 1000

// ShardsOptions configures the ShardService.
type ShardsOptions struct {
	// Cache answers every read; it must be running (routes.Cache.Run).
	Cache *routes.Cache
	// Queue carries mutations to the leader.
	Queue *ops.Queue
	// Store receives the audit events of refused requests.
	Store *state.Store
	// Source names this coordinator process in audit event ids.
	Source string
	// Denied, when non-nil, writes the events of refused calls (outcome
	// DENIED) instead of the outbox (auditlog.Refusals aggregates them per
	// caller).
	Denied EventWriter
	// Routers records the route streams and their acknowledgements for
	// handoffs; nil records none (AckRoutes then answers UNAVAILABLE).
	Routers *handoff.Routers
	// Operations stores safe shard moves for the leader to run; nil makes
	// every MoveShard the raw flip.
	Operations *evac.Store
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Shards serves ShardService. Reads come from the routing cache, so every
// coordinator answers them; mutations are checked against the cache, queued
// and applied by the leader (package ops).
type Shards struct {
	drplanev1.UnimplementedShardServiceServer
	o   ShardsOptions
	aud *auditor

	// tables memoizes the routing table of each cached entry, so that many
	// watchers of one change build it once.
	mu     sync.Mutex
	tables map[*routes.Entry]*drplanev1.RoutingTable
}

// NewShards returns the service.
func NewShards(o ShardsOptions) *Shards {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	return &Shards{
		o: o, aud: newAuditor(o.Store, o.Denied, o.Source+"/shards", o.Now, o.Logger, describeShard),
		tables: map[*routes.Entry]*drplanev1.RoutingTable{},
	}
}

// table returns e's routing table. The result is shared: never modify it.
func (s *Shards) table(e *routes.Entry) *drplanev1.RoutingTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[e]; ok {
		return t
	}
	t := tableToProto(e)
	if len(s.tables) >= 64 {
		// Forget tables of entries that were replaced.
		live := s.o.Cache.Entries()
		for old := range s.tables {
			if live[old.Keyspace.Name] != old {
				delete(s.tables, old)
			}
		}
	}
	s.tables[e] = t
	return t
}

// AuditDenied returns a unary server interceptor that audits refused
// ShardService mutations as DENIED; chain it right before authentication.
func (s *Shards) AuditDenied(authn *auth.Authenticator) grpc.UnaryServerInterceptor {
	return s.aud.deniedInterceptor(authn)
}

// describeShard describes mutating ShardService requests for the audit.
func describeShard(req any) (action, target string, params map[string]string, ok bool) {
	params = map[string]string{}
	set := func(k, v string) {
		if v != "" {
			params[k] = v
		}
	}
	switch r := req.(type) {
	case *drplanev1.MoveShardRequest:
		if r.GetForce() {
			params["force"] = "true"
		}
		set("owner", r.GetOwnerDc())
		set("backup", r.GetBackupDc())
		set("reason", r.GetReason())
		return ops.ActionShardMove, r.GetKeyspace() + "/" + strconv.Itoa(int(r.GetShard())), params, true
	case *drplanev1.SetShardStateRequest:
		set("state", shardStateName(r.GetState()))
		set("reason", r.GetReason())
		return ops.ActionShardSetState, r.GetKeyspace() + "/" + strconv.Itoa(int(r.GetShard())), params, true
	case *drplanev1.SetDCStateRequest:
		set("state", r.GetState())
		set("reason", r.GetReason())
		return ops.ActionDCSetState, r.GetDc(), params, true
	}
	return "", "", nil, false
}

// ready fails with UNAVAILABLE while the cache has not loaded yet.
func (s *Shards) ready() error {
	select {
	case <-s.o.Cache.Ready():
		return nil
	default:
		return apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the routing cache is still loading from etcd; retry")
	}
}

// topology returns the cached topology.
func (s *Shards) topology() (topology.Topology, error) {
	if err := s.ready(); err != nil {
		return topology.Topology{}, err
	}
	t, ok := s.o.Cache.Topology()
	if !ok {
		return t, apierr.New(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "no topology stored in etcd yet")
	}
	return t, nil
}

// entry returns the routing state of keyspace.
func (s *Shards) entry(keyspace string) (*routes.Entry, error) {
	t, err := s.topology()
	if err != nil {
		return nil, err
	}
	if _, err := ops.CheckKeyspace(t, keyspace); err != nil {
		return nil, err
	}
	e, ok := s.o.Cache.Entry(keyspace)
	if !ok {
		return nil, ops.NoMap(keyspace)
	}
	return e, nil
}

// lookup routes one key, naming field in errors.
func lookup(e *routes.Entry, key, field string) (*drplanev1.Route, error) {
	r, err := e.Table.LookupString(key)
	if errors.Is(err, shardmap.ErrBadKey) {
		return nil, apierr.InvalidArgument(field, fmt.Sprintf("keyspace %s routes by RANGE: the key must be an unsigned decimal integer below 2^64, got %q",
			e.Keyspace.Name, clip(key)))
	}
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, "route lookup failed")
	}
	return routeToProto(e, r), nil
}

// clip shortens a key quoted in an error message.
func clip(key string) string {
	const n = 64
	if len(key) <= n {
		return key
	}
	return key[:n] + "…"
}

// Route maps one key to its shard, owner DC and that DC's master.
func (s *Shards) Route(_ context.Context, req *drplanev1.RouteRequest) (*drplanev1.RouteResponse, error) {
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	r, err := lookup(e, req.GetKey(), "key")
	if err != nil {
		return nil, err
	}
	return &drplanev1.RouteResponse{Route: r}, nil
}

// BatchRoute maps up to MaxBatchKeys keys of one keyspace.
func (s *Shards) BatchRoute(_ context.Context, req *drplanev1.BatchRouteRequest) (*drplanev1.BatchRouteResponse, error) {
	keys := req.GetKeys()
	switch {
	case len(keys) == 0:
		return nil, apierr.InvalidArgument("keys", "at least one key is required")
	case len(keys) > MaxBatchKeys:
		return nil, apierr.InvalidArgument("keys", fmt.Sprintf("%d keys; at most %d per call", len(keys), MaxBatchKeys))
	}
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	resp := &drplanev1.BatchRouteResponse{Routes: make([]*drplanev1.Route, len(keys))}
	for i, k := range keys {
		r, err := lookup(e, k, "keys["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		resp.Routes[i] = r
	}
	return resp, nil
}

// ListShards returns a keyspace's routing table.
func (s *Shards) ListShards(_ context.Context, req *drplanev1.ListShardsRequest) (*drplanev1.ListShardsResponse, error) {
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	return &drplanev1.ListShardsResponse{Table: s.table(e)}, nil
}

// GetShard returns one shard and its route.
func (s *Shards) GetShard(_ context.Context, req *drplanev1.GetShardRequest) (*drplanev1.GetShardResponse, error) {
	e, err := s.entry(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	id := int(req.GetShard())
	sh, ok := e.Map.Shard(id)
	r, ok2 := e.Table.Shard(id)
	if !ok || !ok2 {
		return nil, &apierr.Error{Code: drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, Field: "shard",
			Message: fmt.Sprintf("shard %d not found in keyspace %s (it has %d shards)", id, e.Keyspace.Name, e.Table.Len())}
	}
	return &drplanev1.GetShardResponse{Shard: shardToProto(sh), Route: routeToProto(e, r)}, nil
}

// WatchRoutes streams routing tables: every requested keyspace's at once
// (as soon as it has a shard map), then a keyspace's again whenever its map
// or a master of its cluster changed. A slow stream skips intermediate
// tables and gets the latest.
func (s *Shards) WatchRoutes(req *drplanev1.WatchRoutesRequest, stream grpc.ServerStreamingServer[drplanev1.WatchRoutesResponse]) error {
	ctx := stream.Context()
	select {
	case <-s.o.Cache.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	want := map[string]bool{}
	if len(req.GetKeyspaces()) > 0 {
		t, err := s.topology()
		if err != nil {
			return err
		}
		for i, ks := range req.GetKeyspaces() {
			if _, err := ops.CheckKeyspace(t, ks); err != nil {
				if e, ok := apierr.FromError(err); ok {
					e.Field = "keyspaces[" + strconv.Itoa(i) + "]"
				}
				return err
			}
			want[ks] = true
		}
	}
	var streamID string
	if s.o.Routers != nil {
		id, closeFn, err := s.o.Routers.Open(ctx, req.GetDc(), req.GetClient(), req.GetKeyspaces())
		if err != nil {
			return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "record the route stream in etcd")
		}
		defer closeFn()
		streamID = id
	}
	sub := s.o.Cache.Subscribe()
	defer sub.Close()
	sent := map[string]*routes.Entry{}
	for {
		entries := s.o.Cache.Entries()
		names := make([]string, 0, len(entries))
		for name := range entries {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			e := entries[name]
			if (len(want) > 0 && !want[name]) || sent[name] == e {
				continue
			}
			if err := stream.Send(&drplanev1.WatchRoutesResponse{Table: s.table(e), StreamId: streamID}); err != nil {
				return err
			}
			sent[name] = e
		}
		select {
		case <-sub.C():
		case <-ctx.Done():
			return nil
		}
	}
}

// AckRoutes records a router's acknowledgement of a routing table.
func (s *Shards) AckRoutes(ctx context.Context, req *drplanev1.AckRoutesRequest) (*drplanev1.AckRoutesResponse, error) {
	switch {
	case req.GetStreamId() == "":
		return nil, apierr.InvalidArgument("stream_id", "stream_id is required")
	case req.GetKeyspace() == "":
		return nil, apierr.InvalidArgument("keyspace", "keyspace is required")
	case req.GetMapRevision() <= 0:
		return nil, apierr.InvalidArgument("map_revision", "map_revision must be positive")
	case s.o.Routers == nil:
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "this coordinator does not record route streams")
	}
	err := s.o.Routers.Ack(ctx, req.GetStreamId(), req.GetKeyspace(), req.GetMapRevision())
	switch {
	case errors.Is(err, handoff.ErrUnknownStream):
		return nil, notFound("stream_id", "route stream", req.GetStreamId())
	case err != nil:
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "record the acknowledgement in etcd")
	}
	return &drplanev1.AckRoutesResponse{}, nil
}
