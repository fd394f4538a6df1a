package apierr_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// httpError is the JSON form of a google.rpc.Status rendered by the gateway.
type httpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

func TestGatewayRendersCatalogErrors(t *testing.T) {
	log := &syncBuffer{}
	conn := startServer(t, true, log)
	mux := runtime.NewServeMux(
		runtime.WithErrorHandler(apierr.HTTPErrorHandler(apierr.Options{Logger: zerolog.New(log)})),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: true},
		}),
	)
	require.NoError(t, drplanev1.RegisterTopologyServiceHandlerClient(t.Context(), mux, drplanev1.NewTopologyServiceClient(conn)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		name   string
		path   string
		status int
		reason string
		msg    string
		field  string
	}{
		{name: "api error", path: "/v1/status?dc=unknown", status: http.StatusBadRequest, reason: "INVALID_ARGUMENT", msg: `unknown DC "unknown"`, field: "dc"},
		{name: "owner moved", path: "/v1/status?dc=moved", status: http.StatusBadRequest, reason: "NOT_OWNER", msg: "shard 3 moved"},
		{name: "internal", path: "/v1/status?dc=boom", status: http.StatusInternalServerError, reason: "INTERNAL", msg: "internal error"},
		{name: "gateway decode error keeps its message", path: "/v1/status?dc=a&dc=b", status: http.StatusBadRequest, reason: "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, "body: %s", body)

			var got httpError
			require.NoError(t, json.Unmarshal(body, &got), "body: %s", body)
			require.Len(t, got.Details, 1, "body: %s", body)
			d := got.Details[0]
			assert.Equal(t, "type.googleapis.com/google.rpc.ErrorInfo", d.Type)
			assert.Equal(t, apierr.Domain, d.Domain)
			assert.Equal(t, tt.reason, d.Reason)
			assert.Equal(t, tt.field, d.Metadata[apierr.FieldKey])
			if tt.msg != "" {
				assert.Equal(t, tt.msg, got.Message)
			} else {
				assert.NotEmpty(t, got.Message)
			}
			assert.NotContains(t, string(body), "hunter2")
		})
	}

	// Success uses proto field names, as the OpenAPI spec documents.
	resp, err := http.Get(srv.URL + "/v1/status?dc=dc-a1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	assert.JSONEq(t, `{"dcs":[{"name":"dc-a1","clusters":[{"name":"db","instances":[{"name":"dc-a1-db1","gtid_binlog_pos":"0-1-5"}]}]}]}`, string(body))

	// Routing errors keep their HTTP code.
	resp, err = http.Get(srv.URL + "/v1/nothing-here")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
