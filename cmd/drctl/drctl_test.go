package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/labfile"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Tokens the test API knows.
const (
	adminToken  = "admin-token"
	nobodyToken = "nobody-token" // known, but with no role that may read status
)

// fakeAPI stands in for the coordinator's TopologyService: fixed answers,
// bearer-token checks like the real one, on a real loopback listener.
type fakeAPI struct {
	drplanev1.UnimplementedTopologyServiceServer
	status *drplanev1.GetStatusResponse
}

func (f *fakeAPI) GetStatus(_ context.Context, req *drplanev1.GetStatusRequest) (*drplanev1.GetStatusResponse, error) {
	if req.GetDc() == "" {
		return f.status, nil
	}
	for _, dc := range f.status.GetDcs() {
		if dc.GetName() == req.GetDc() {
			return &drplanev1.GetStatusResponse{Dcs: []*drplanev1.DCStatus{dc}, GeneratedAt: f.status.GetGeneratedAt()}, nil
		}
	}
	return nil, apierr.InvalidArgument("dc", `unknown DC "`+req.GetDc()+`"`)
}

// GetTopology answers with the DCs of the status fixture (for completion).
func (f *fakeAPI) GetTopology(context.Context, *drplanev1.GetTopologyRequest) (*drplanev1.GetTopologyResponse, error) {
	t := &drplanev1.Topology{}
	for _, dc := range f.status.GetDcs() {
		t.Dcs = append(t.Dcs, &drplanev1.DataCenter{Name: dc.GetName()})
	}
	return &drplanev1.GetTopologyResponse{Topology: t}, nil
}

func checkToken(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch strings.Join(md.Get("authorization"), ",") {
	case "Bearer " + adminToken:
		return h(ctx, req)
	case "Bearer " + nobodyToken:
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "GetStatus needs role viewer")
	case "":
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "missing bearer token")
	}
	return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "unknown token")
}

// startAPI serves the fake API on a free loopback port until the test ends.
func startAPI(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.UnaryInterceptor(checkToken))
	drplanev1.RegisterTopologyServiceServer(gs, &fakeAPI{status: fixtureStatus()})
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String()
}

// result is one drctl invocation.
type result struct {
	code           int
	stdout, stderr string
}

// drctl runs the command tree in process with the given environment.
func drctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestStatusTable(t *testing.T) {
	addr := startAPI(t)
	r := drctl(t, nil, "status", "--api", addr, "--token", adminToken)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	assert.Contains(t, r.stdout, "DC dc-a1 (city city-a) ACTIVE\n")
	assert.Contains(t, r.stdout, "DC dc-b1 (city city-b) DOWN\n")
	rows := readTable(t, r.stdout, "CLUSTER")
	require.Len(t, rows, 3)
	assert.Equal(t, "dc-a1-db1", rows[0]["INSTANCE"])
	assert.Equal(t, "ON 2 clients", rows[0]["SEMI-SYNC"])
	assert.Equal(t, "3s", rows[1]["LAG"])
	assert.Contains(t, r.stdout, "logic: not implemented yet")
}

func TestStatusJSONFromEnv(t *testing.T) {
	addr := startAPI(t)
	env := map[string]string{apiclient.EnvAPI: addr, apiclient.EnvToken: adminToken}
	r := drctl(t, env, "status", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	got := &drplanev1.GetStatusResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	assert.True(t, proto.Equal(fixtureStatus(), got), "JSON carries the whole answer")
	assert.Contains(t, r.stdout, "\n  \"dcs\": [", "indented, proto field names")
	assert.Contains(t, r.stdout, `"gtid_binlog_pos"`)

	// --output after the subcommand works the same.
	r = drctl(t, env, "status", "--dc", "dc-b1", "--output=json")
	require.Equal(t, exitOK, r.code, r.stderr)
	got.Reset()
	require.NoError(t, protojson.Unmarshal([]byte(r.stdout), got))
	require.Len(t, got.GetDcs(), 1)
	assert.Equal(t, "dc-b1", got.GetDcs()[0].GetName())
}

func TestStatusFromLabFile(t *testing.T) {
	addr := startAPI(t)
	dir := t.TempDir()
	lab := &labfile.Lab{API: labfile.API{GRPC: addr, HTTP: "http://127.0.0.1:1", Token: adminToken}}
	require.NoError(t, labfile.Write(filepath.Join(dir, "lab.json"), lab))

	for _, arg := range []string{dir, filepath.Join(dir, "lab.json")} {
		r := drctl(t, nil, "--lab", arg, "status", "--dc", "dc-b1")
		require.Equal(t, exitOK, r.code, "--lab %s: %s", arg, r.stderr)
		assert.Contains(t, r.stdout, "DC dc-b1 (city city-b) DOWN")
		assert.NotContains(t, r.stdout, "dc-a1", "--dc reaches the API")
	}

	// An explicit --token beats the lab's.
	r := drctl(t, nil, "status", "--lab", dir, "--token", "wrong")
	assert.Equal(t, exitAuth, r.code)

	// A lab directory without lab.json.
	r = drctl(t, nil, "status", "--lab", t.TempDir())
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "no lab.json")
}

func TestExitCodes(t *testing.T) {
	addr := startAPI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"wrong token", nil, []string{"status", "--api", addr, "--token", "wrong"},
			exitAuth, "drctl: unknown token (code UNAUTHENTICATED)\n"},
		{"no token", nil, []string{"status", "--api", addr},
			exitAuth, "drctl: missing bearer token (code UNAUTHENTICATED)\n"},
		{"role too low", nil, []string{"status", "--api", addr, "--token", nobodyToken},
			exitAuth, "drctl: GetStatus needs role viewer (code PERMISSION_DENIED)\n"},
		{"unknown DC", nil, []string{"status", "--api", addr, "--token", adminToken, "--dc", "dc-zz"},
			exitFailure, "drctl: unknown DC \"dc-zz\" (field dc) (code INVALID_ARGUMENT)\n"},
		{"nothing listens", nil, []string{"status", "--api", dead, "--token", adminToken},
			exitUnavailable, "drctl: cannot reach the API at " + dead},
		{"yaml output", nil, []string{"status", "--api", addr, "-o", "yaml"},
			exitUsage, "drctl: invalid output format \"yaml\": want table or json\n" + "Run 'drctl status --help' for usage.\n"},
		{"unknown flag", nil, []string{"status", "--nope"},
			exitUsage, "drctl: unknown flag: --nope"},
		{"extra argument", nil, []string{"status", "dc-a1", "--api", addr},
			exitUsage, `drctl: unknown command "dc-a1" for "drctl status"`},
		{"unknown command", nil, []string{"statsu"},
			exitUsage, "drctl: unknown command \"statsu\" for \"drctl\"\n\nDid you mean this?\n\tstatus\n"},
		{"bad timeout", nil, []string{"status", "--timeout", "soon"},
			exitUsage, `invalid argument "soon" for "--timeout"`},
		{"no endpoint", nil, []string{"status"},
			exitUsage, "drctl: apiclient: no API endpoint: pass --api HOST:PORT, set DRPLANE_API, or point --lab at a lab.json"},
		{"certificate without key", nil, []string{"status", "--api", addr, "--tls-cert", "c.pem"},
			exitUsage, "tls-cert tls-key"},
		{"flag beats env", map[string]string{apiclient.EnvAPI: dead, apiclient.EnvToken: adminToken}, []string{"status", "--api", addr},
			exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := drctl(t, tt.env, tt.args...)
			assert.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			if tt.stderr == "" {
				assert.Empty(t, r.stderr)
			} else {
				assert.Contains(t, r.stderr, tt.stderr)
			}
			if tt.code != exitOK {
				assert.Empty(t, r.stdout, "errors go to stderr only")
			}
			if tt.code == exitUsage {
				assert.Regexp(t, `Run 'drctl( status)? --help' for usage.\n$`, r.stderr)
			}
		})
	}
}

func TestHelpAndCompletion(t *testing.T) {
	r := drctl(t, nil, "--help")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "status")
	assert.Contains(t, r.stdout, "completion")
	assert.Contains(t, r.stdout, "--lab")

	r = drctl(t, nil, "completion", "bash")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "__start_drctl")

	// Completing --dc asks the API for its DCs.
	addr := startAPI(t)
	r = drctl(t, nil, "__complete", "status", "--api", addr, "--token", adminToken, "--dc", "")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, []string{"dc-a1", "dc-b1", ":4"}, strings.Fields(r.stdout))

	r = drctl(t, nil, "__complete", "status", "-o", "")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, []string{"table", "json", ":4"}, strings.Fields(r.stdout))
}

// TestPlaintextToRemoteRefused: drctl does not send the token in clear to a
// remote address unless --insecure is given.
func TestPlaintextToRemoteRefused(t *testing.T) {
	r := drctl(t, nil, "status", "--api", "192.0.2.10:7700", "--token", adminToken)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "refusing to send the bearer token in clear to 192.0.2.10:7700")
	assert.NotContains(t, r.stderr, adminToken)
}
