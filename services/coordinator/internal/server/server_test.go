package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/proto/openapi"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/server"
)

const (
	adminToken  = "admin-secret-token"
	viewerToken = "viewer-secret-token"
	callTimeout = 10 * time.Second
)

func labTopology() topology.Topology {
	return topology.Topology{
		Cities: []topology.City{{Name: "city-a"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}},
		Clusters: []topology.Cluster{{Name: "main", DC: "dc-a1", Instances: []topology.Instance{
			{Name: "a1-db1", Addr: "127.0.0.1:3306"}, {Name: "a1-db2", Addr: "127.0.0.1:3307"},
		}}},
		Keyspaces: []topology.Keyspace{{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64}},
	}
}

// api is a running server over a real etcd.
type api struct {
	st   *state.Store
	grpc drplanev1.TopologyServiceClient
	base string
}

func startAPI(t *testing.T) *api {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "")
	authn, err := auth.New([]auth.Token{
		{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
		{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
	}, server.Policy())
	require.NoError(t, err)
	srv := server.New(server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Auth: authn,
		Topology: &control.Topology{Store: st}, Logger: zerolog.Nop(),
	})
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Run returns nil when its context ends")
		case <-time.After(callTimeout):
			t.Error("server did not stop")
		}
	})
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &api{st: st, grpc: drplanev1.NewTopologyServiceClient(conn), base: "http://" + srv.HTTPAddr()}
}

func bearer(t *testing.T, token string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (a *api) get(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: callTimeout}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

func (a *api) post(t *testing.T, path, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, a.base+path, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: callTimeout}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// rpcStatus is the google.rpc.Status JSON the gateway renders for errors.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

func requireRESTError(t *testing.T, code int, body []byte, wantHTTP int, wantGRPC codes.Code, reason, field string) rpcStatus {
	t.Helper()
	require.Equal(t, wantHTTP, code, "body: %s", body)
	var st rpcStatus
	require.NoError(t, json.Unmarshal(body, &st), "body: %s", body)
	assert.Equal(t, int(wantGRPC), st.Code)
	assert.NotEmpty(t, st.Message)
	require.Len(t, st.Details, 1, "body: %s", body)
	d := st.Details[0]
	assert.Equal(t, "type.googleapis.com/google.rpc.ErrorInfo", d.Type)
	assert.Equal(t, apierr.Domain, d.Domain)
	assert.Equal(t, reason, d.Reason)
	assert.Equal(t, field, d.Metadata[apierr.FieldKey])
	return st
}

func errorInfo(t *testing.T, err error) *errdetails.ErrorInfo {
	t.Helper()
	s, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("status %v has no ErrorInfo", s)
	return nil
}

func TestGRPC(t *testing.T) {
	a := startAPI(t)

	// Before a topology is stored the API says so.
	_, err := a.grpc.GetTopology(bearer(t, adminToken), &drplanev1.GetTopologyRequest{})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	assert.Equal(t, "FAILED_PRECONDITION", errorInfo(t, err).Reason)

	rev, err := a.st.PutTopology(t.Context(), labTopology(), 0)
	require.NoError(t, err)

	resp, err := a.grpc.GetTopology(bearer(t, adminToken), &drplanev1.GetTopologyRequest{})
	require.NoError(t, err)
	topo := resp.GetTopology()
	assert.Equal(t, rev, topo.GetRevision())
	require.Len(t, topo.GetDcs(), 1)
	assert.Equal(t, "dc-a1", topo.GetDcs()[0].GetName())
	require.Len(t, topo.GetClusters(), 1)
	assert.Len(t, topo.GetClusters()[0].GetInstances(), 2)
	assert.Equal(t, "orders", topo.GetKeyspaces()[0].GetName())

	// A viewer reads too.
	_, err = a.grpc.GetTopology(bearer(t, viewerToken), &drplanev1.GetTopologyRequest{})
	require.NoError(t, err)

	// No token, a wrong token.
	_, err = a.grpc.GetTopology(bearer(t, ""), &drplanev1.GetTopologyRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Equal(t, "UNAUTHENTICATED", errorInfo(t, err).Reason)
	_, err = a.grpc.GetTopology(bearer(t, "guess"), &drplanev1.GetTopologyRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	// An unknown DC names the field.
	_, err = a.grpc.GetStatus(bearer(t, viewerToken), &drplanev1.GetStatusRequest{Dc: "dc-nowhere"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	info := errorInfo(t, err)
	assert.Equal(t, "INVALID_ARGUMENT", info.Reason)
	assert.Equal(t, "dc", info.Metadata[apierr.FieldKey])
	assert.Contains(t, status.Convert(err).Message(), "dc-nowhere")
}

func TestREST(t *testing.T) {
	a := startAPI(t)
	ctx := t.Context()
	_, err := a.st.PutTopology(ctx, labTopology(), 0)
	require.NoError(t, err)
	lease, err := a.st.Client().Grant(ctx, 60)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, a.st.PutInstanceStatus(ctx, state.InstanceStatus{
		DC: "dc-a1", Cluster: "main", Name: "a1-db1", Role: state.RoleMaster, Reachable: true, GTIDBinlogPos: "0-1-9",
		ObservedAt: now, ObservedBy: "agent-1",
	}, lease.ID))
	require.NoError(t, a.st.PutInstanceStatus(ctx, state.InstanceStatus{
		DC: "dc-a1", Cluster: "main", Name: "a1-db2", Role: state.RoleReplica, Reachable: true, ReadOnly: true,
		IORunning: true, SQLRunning: true, ObservedAt: now, ObservedBy: "agent-1",
	}, lease.ID))
	require.NoError(t, a.st.PutService(ctx, state.ServiceRecord{Service: "haagent", ID: "agent-1", DC: "dc-a1", HealthAddr: "127.0.0.1:9999", StartedAt: now}, lease.ID))

	t.Run("no token is 401 with a google.rpc.Status", func(t *testing.T) {
		code, body := a.get(t, "/v1/status", "")
		st := requireRESTError(t, code, body, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHENTICATED", "")
		assert.Contains(t, st.Message, "bearer token")
	})
	t.Run("wrong token is 401", func(t *testing.T) {
		code, body := a.get(t, "/v1/status", "not-a-token")
		requireRESTError(t, code, body, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHENTICATED", "")
		assert.NotContains(t, string(body), "not-a-token")
	})
	t.Run("admin reads the status", func(t *testing.T) {
		code, body := a.get(t, "/v1/status", adminToken)
		require.Equal(t, http.StatusOK, code, "body: %s", body)
		var resp struct {
			GeneratedAt string `json:"generated_at"`
			DCs         []struct {
				Name     string `json:"name"`
				Clusters []struct {
					Name      string `json:"name"`
					Master    string `json:"master"`
					Health    string `json:"health"`
					Instances []struct {
						Name          string `json:"name"`
						Role          string `json:"role"`
						GTIDBinlogPos string `json:"gtid_binlog_pos"`
						IORunning     bool   `json:"io_running"`
					} `json:"instances"`
				} `json:"clusters"`
				Services []struct {
					Name string `json:"name"`
					ID   string `json:"id"`
				} `json:"services"`
			} `json:"dcs"`
		}
		require.NoError(t, json.Unmarshal(body, &resp), "body: %s", body)
		assert.NotEmpty(t, resp.GeneratedAt)
		require.Len(t, resp.DCs, 1)
		require.Len(t, resp.DCs[0].Clusters, 1)
		cl := resp.DCs[0].Clusters[0]
		assert.Equal(t, control.HealthOK, cl.Health)
		assert.Equal(t, "a1-db1", cl.Master)
		require.Len(t, cl.Instances, 2)
		assert.Equal(t, "ROLE_MASTER", cl.Instances[0].Role)
		assert.Equal(t, "0-1-9", cl.Instances[0].GTIDBinlogPos, "JSON uses the proto field names")
		assert.True(t, cl.Instances[1].IORunning)
		require.Len(t, resp.DCs[0].Services, 1)
		assert.Equal(t, "agent-1", resp.DCs[0].Services[0].ID)
	})
	t.Run("viewer reads the topology", func(t *testing.T) {
		code, body := a.get(t, "/v1/topology", viewerToken)
		require.Equal(t, http.StatusOK, code, "body: %s", body)
		assert.Contains(t, string(body), `"shard_key":"user_id"`)
	})
	t.Run("viewer filters by DC", func(t *testing.T) {
		code, body := a.get(t, "/v1/status?dc=dc-a1", viewerToken)
		require.Equal(t, http.StatusOK, code, "body: %s", body)
	})
	t.Run("unknown DC is 400 naming the field", func(t *testing.T) {
		code, body := a.get(t, "/v1/status?dc=dc-nowhere", viewerToken)
		st := requireRESTError(t, code, body, http.StatusBadRequest, codes.InvalidArgument, "INVALID_ARGUMENT", "dc")
		assert.Contains(t, st.Message, "dc-nowhere")
	})
	t.Run("openapi.json needs no token and is the spec", func(t *testing.T) {
		code, body := a.get(t, "/openapi.json", "")
		require.Equal(t, http.StatusOK, code)
		assert.JSONEq(t, string(openapi.Spec()), string(body))
		var doc struct {
			Paths map[string]json.RawMessage `json:"paths"`
		}
		require.NoError(t, json.Unmarshal(body, &doc))
		assert.Contains(t, doc.Paths, "/v1/status")
		assert.Contains(t, doc.Paths, "/v1/topology")
	})
	t.Run("a call without a token is 401 before the gateway parses it", func(t *testing.T) {
		for _, path := range []string{"/v1/keyspaces/x/shards/x:move", "/v1/nothing"} {
			code, body := a.post(t, path, "", strings.NewReader("{not json"))
			requireRESTError(t, code, body, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHENTICATED", "")
		}
	})
	t.Run("a body beyond the limit is refused", func(t *testing.T) {
		big := `{"reason":"` + strings.Repeat("x", server.DefaultMaxBodyBytes) + `"}`
		code, body := a.post(t, "/v1/keyspaces/orders/shards/1:move", adminToken, strings.NewReader(big))
		require.GreaterOrEqual(t, code, 400, "body: %s", body)
		require.Less(t, code, 500, "body: %s", body)
	})
	t.Run("unknown path is 404", func(t *testing.T) {
		code, _ := a.get(t, "/v1/nothing", adminToken)
		assert.Equal(t, http.StatusNotFound, code)
	})
}

func TestListenFailsOnBusyPort(t *testing.T) {
	authn, err := auth.New(nil, server.Policy())
	require.NoError(t, err)
	first := server.New(server.Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Auth: authn})
	require.NoError(t, first.Listen())
	second := server.New(server.Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: first.HTTPAddr(), Auth: authn})
	require.Error(t, second.Listen(), "the HTTP port is taken")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, first.Run(ctx), "a server whose context already ended stops cleanly")
}
