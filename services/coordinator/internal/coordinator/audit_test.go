package coordinator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/freeport"
	"github.com/drplane/drplane/pkg/harness"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

// EnvTestES names an Elasticsearch 8 URL (credentials may be in it) for the
// tests that run the coordinator against a real cluster.
const EnvTestES = "DRPLANE_TEST_ES_URL"

// lockedBuffer collects the service's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runService runs the coordinator binary's code in process with audit as
// its audit section, and returns its gRPC and REST addresses.
func runService(t *testing.T, audit map[string]any) (grpcAddr, httpAddr string) {
	t.Helper()
	cluster := harness.StartEtcd(t, 1)
	ports, err := freeport.Pick(3)
	require.NoError(t, err)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	cfg := map[string]any{
		"dc": "dc-a1", "id": "coord-audit-test", "health_addr": addr(0),
		"etcd":  map[string]any{"endpoints": cluster.Endpoints()},
		"log":   map[string]any{"level": "warn", "format": "json"},
		"api":   map[string]any{"grpc_addr": addr(1), "http_addr": addr(2)},
		"auth":  map[string]any{"tokens": []map[string]any{{"name": "ops-admin", "role": "admin", "sha256": auth.Hash(adminToken)}, {"name": "dashboard", "role": "viewer", "sha256": auth.Hash(viewerToken)}}},
		"audit": audit,
	}
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "coordinator.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- daemon.MainContext(ctx, coordinator.Spec(coordinator.DefaultConfig()), []string{"--config", path}, logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, daemon.ExitOK, code, "logs:\n%s", logs)
		case <-time.After(callTimeout):
			t.Errorf("coordinator did not stop; logs:\n%s", logs)
		}
	})
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		select {
		case code := <-done:
			t.Fatalf("coordinator exited with %d:\n%s", code, logs)
		default:
		}
		resp, err := http.Get("http://" + addr(0) + "/readyz")
		if err != nil {
			return check.That(false, "never ready; logs:\n%s", logs)
		}
		_ = resp.Body.Close()
		return check.That(resp.StatusCode == http.StatusOK, "never ready; logs:\n%s", logs)
	})
	return addr(1), addr(2)
}

// checkAuditSearch makes an anonymous REST call and a denied switchover,
// then finds both audit events through SearchAudit.
func checkAuditSearch(t *testing.T, grpcAddr, httpAddr string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/v1/status")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	call := func(token string) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err = drplanev1.NewFailoverServiceClient(conn).Switchover(call(viewerToken), &drplanev1.SwitchoverRequest{Dc: "dc-a1", Cluster: "main"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)

	audit := drplanev1.NewAuditServiceClient(conn)
	var got *drplanev1.SearchAuditResponse
	check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
		got, err = audit.SearchAudit(call(viewerToken), &drplanev1.SearchAuditRequest{Query: "unauthenticated OR switchover"})
		if err != nil {
			return err
		}
		return check.That(len(got.GetEvents()) == 2, "search: %v %v", got, err)
	})
	byAction := map[string]*drplanev1.AuditEvent{}
	for _, e := range got.GetEvents() {
		byAction[e.GetAction()] = e
	}
	require.Contains(t, byAction, "api.unauthenticated")
	assert.Equal(t, "anonymous", byAction["api.unauthenticated"].GetActor())
	require.Contains(t, byAction, "switchover.request")
	assert.Equal(t, "token:dashboard", byAction["switchover.request"].GetActor())
	assert.Equal(t, "DENIED", byAction["switchover.request"].GetOutcome())

	// The REST endpoint answers the same search.
	q := url.Values{"query": {"switchover"}, "actor": {"token:dashboard"}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+"/v1/audit?"+q.Encode(), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	hresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer hresp.Body.Close()
	require.Equal(t, http.StatusOK, hresp.StatusCode)
	var body bytes.Buffer
	_, err = body.ReadFrom(hresp.Body)
	require.NoError(t, err)
	assert.Contains(t, body.String(), `"action":"switchover.request"`)
}

// TestAuditEmbedded runs the coordinator with the embedded audit store.
func TestAuditEmbedded(t *testing.T) {
	grpcAddr, httpAddr := runService(t, map[string]any{"store": "embedded", "dir": filepath.Join(t.TempDir(), "audit")})
	checkAuditSearch(t, grpcAddr, httpAddr)
}

// TestAuditElasticsearch runs the coordinator with audit.store
// elasticsearch against the cluster at DRPLANE_TEST_ES_URL, on an index
// with a random name that is deleted afterwards.
func TestAuditElasticsearch(t *testing.T) {
	addr := os.Getenv(EnvTestES)
	if addr == "" {
		t.Skip(EnvTestES + " is not set; set it to an Elasticsearch 8 URL to run the coordinator's audit search against a real cluster")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	index := "drplane-test-" + hex.EncodeToString(b) + "-audit"
	t.Cleanup(func() {
		for _, path := range []string{index, index + "-meta", "_index_template/docstore-" + index, "_index_template/docstore-" + index + "-meta"} {
			req, err := http.NewRequest(http.MethodDelete, strings.TrimRight(addr, "/")+"/"+path, nil)
			if !assert.NoError(t, err) {
				continue
			}
			if resp, err := http.DefaultClient.Do(req); assert.NoError(t, err) {
				_ = resp.Body.Close()
			}
		}
	})
	grpcAddr, httpAddr := runService(t, map[string]any{
		"store": "elasticsearch", "index": index,
		"elasticsearch": map[string]any{"addresses": []string{addr}},
	})
	checkAuditSearch(t, grpcAddr, httpAddr)
}
