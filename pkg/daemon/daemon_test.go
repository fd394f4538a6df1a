package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

// tinyConfig is a service configuration with a secret of its own.
type tinyConfig struct {
	daemon.Common `yaml:",inline"`
	Greeting      string        `yaml:"greeting"`
	Token         config.Secret `yaml:"token"`
}

func (c *tinyConfig) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.Greeting == "" {
		return config.Invalid("greeting", "required")
	}
	return nil
}

// tinySpec returns a service that counts its runs in a metric, hands its
// Env to envs and waits for its context to end.
func tinySpec(envs chan<- *daemon.Env) daemon.Spec {
	cfg := &tinyConfig{Common: daemon.DefaultCommon()}
	return daemon.Spec{
		Name:             "tiny",
		Short:            "a service for tests",
		Config:           cfg,
		LogicImplemented: true,
		Run: func(ctx context.Context, env *daemon.Env) error {
			runs := prometheus.NewCounter(prometheus.CounterOpts{Name: "tiny_runs_total", Help: "Runs."})
			env.Registry.MustRegister(runs)
			runs.Inc()
			if envs != nil {
				envs <- env
			}
			<-ctx.Done()
			return nil
		},
	}
}

// syncBuffer is a bytes.Buffer safe for the service's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestMainExitCodes(t *testing.T) {
	secretCfg := writeConfig(t, `
greeting: hello
token: s3cret-token
etcd:
  password: hunter2
  dial_timeout: 300ms
`)
	plainCfg := writeConfig(t, "greeting: hello\netcd:\n  dial_timeout: 300ms\n")
	unknownCfg := writeConfig(t, "greeting: hello\nbogus_key: 1\n")
	deadEtcd := "http://" + closedPort(t)

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string
		stderr     []string
		notInOuput []string
	}{
		{
			name: "check-config prints the config with secrets redacted",
			args: []string{"--check-config", "--config", secretCfg, "--dc", "dc-t", "--etcd", deadEtcd},
			code: daemon.ExitOK,
			stdout: []string{"# tiny configuration is valid", "greeting: hello", "token: '[redacted]'",
				"password: '[redacted]'", deadEtcd, "dc: dc-t"},
			notInOuput: []string{"s3cret-token", "hunter2"},
		},
		{
			name:   "missing etcd endpoints",
			args:   []string{"--config", plainCfg, "--dc", "dc-t"},
			code:   daemon.ExitConfig,
			stderr: []string{"invalid configuration", "etcd.endpoints"},
		},
		{
			name:   "malformed etcd endpoint",
			args:   []string{"--config", plainCfg, "--dc", "dc-t", "--etcd", "127.0.0.1:2379"},
			code:   daemon.ExitConfig,
			stderr: []string{"etcd.endpoints[0]"},
		},
		{
			name:   "missing dc",
			args:   []string{"--config", plainCfg, "--etcd", deadEtcd},
			code:   daemon.ExitConfig,
			stderr: []string{"config: dc: required"},
		},
		{
			name:   "service field validated",
			args:   []string{"--dc", "dc-t", "--etcd", deadEtcd},
			code:   daemon.ExitConfig,
			stderr: []string{"greeting"},
		},
		{
			name:   "unknown YAML key",
			args:   []string{"--config", unknownCfg, "--dc", "dc-t", "--etcd", deadEtcd},
			code:   daemon.ExitConfig,
			stderr: []string{"invalid configuration", "bogus_key"},
		},
		{
			name:   "unknown flag",
			args:   []string{"--no-such-flag"},
			code:   daemon.ExitConfig,
			stderr: []string{"no-such-flag"},
		},
		{
			name:   "help",
			args:   []string{"--help"},
			code:   daemon.ExitOK,
			stdout: []string{"tiny — a service for tests", "--check-config", "Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration"},
		},
		{
			name:   "version needs no configuration",
			args:   []string{"--version"},
			code:   daemon.ExitOK,
			stdout: []string{"tiny " + daemon.Version + "\n"},
		},
		{
			name:   "unreachable etcd",
			args:   []string{"--config", plainCfg, "--dc", "dc-t", "--etcd", deadEtcd},
			code:   daemon.ExitFailure,
			stderr: []string{"cannot reach etcd", deadEtcd, "exiting on error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code := daemon.MainContext(ctx, tinySpec(nil), tt.args, &stdout, &stderr)
			out, errOut := stdout.String(), stderr.String()
			require.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			for _, s := range tt.stdout {
				assert.Contains(t, out, s)
			}
			for _, s := range tt.stderr {
				assert.Contains(t, errOut, s)
			}
			for _, s := range tt.notInOuput {
				assert.NotContains(t, out+errOut, s)
			}
		})
	}
}

func TestMainTakesEnvironment(t *testing.T) {
	t.Setenv("DRPLANE_ETCD_ENDPOINTS", "http://127.0.0.1:1,http://127.0.0.1:2")
	t.Setenv("DRPLANE_GREETING", "from-env")
	t.Setenv("DRPLANE_TOKEN", "env-secret")
	var stdout, stderr syncBuffer
	code := daemon.MainContext(t.Context(), tinySpec(nil), []string{"--check-config", "--dc", "dc-t"}, &stdout, &stderr)
	require.Equal(t, daemon.ExitOK, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "http://127.0.0.1:2")
	assert.Contains(t, out, "greeting: from-env")
	assert.NotContains(t, out, "env-secret")
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// running is a tiny service started by MainContext against a real etcd.
type running struct {
	st     *state.Store
	env    *daemon.Env
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startTiny(t *testing.T, leaseTTL string) *running {
	t.Helper()
	etcd := harness.StartEtcd(t, 1)
	st := state.New(harness.EtcdClientFor(t, etcd), "/drplane-test")
	cfg := writeConfig(t, "greeting: hi\netcd:\n  prefix: /drplane-test\n  lease_ttl: "+leaseTTL+"\n")
	args := []string{"--config", cfg, "--dc", "dc-t", "--id", "tiny-1", "--etcd", strings.Join(etcd.Endpoints(), ",")}

	envs := make(chan *daemon.Env, 1)
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{st: st, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- daemon.MainContext(ctx, tinySpec(envs), args, io.Discard, r.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	select {
	case r.env = <-envs:
	case code := <-r.done:
		r.done <- code
		t.Fatalf("Main returned %d before running the service; stderr:\n%s", code, r.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("service not started; stderr:\n%s", r.stderr.String())
	}
	return r
}

// stop cancels Main's context and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	return -1
}

// registration waits for the service's record and returns it with the lease
// its key is on.
func (r *running) registration(t *testing.T) (state.ServiceRecord, int64) {
	t.Helper()
	ctx := t.Context()
	var rec state.ServiceRecord
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		recs, err := r.st.Services(ctx, "dc-t")
		if err != nil || len(recs) != 1 {
			return check.That(false, "the service registers itself")
		}
		rec = recs[0]
		return nil
	})
	kv, err := r.st.Client().Get(ctx, r.st.Key("services", "dc-t", "tiny", "tiny-1"))
	require.NoError(t, err)
	require.Len(t, kv.Kvs, 1)
	return rec, kv.Kvs[0].Lease
}

func TestMainRunsRegistersAndStops(t *testing.T) {
	// A long TTL: the registration must go by revocation, not expiry.
	r := startTiny(t, "30s")
	rec, lease := r.registration(t)
	assert.Equal(t, "tiny", rec.Service)
	assert.Equal(t, "tiny-1", rec.ID)
	assert.Equal(t, daemon.Version, rec.Version)
	assert.True(t, rec.LogicImplemented)
	assert.Equal(t, r.env.Record, rec, "the service sees its own registration")
	assert.Equal(t, int64(r.env.Lease()), lease, "the registration lives on the process lease")
	_, port, err := net.SplitHostPort(rec.HealthAddr)
	require.NoError(t, err)
	require.NotEqual(t, "0", port, "the registration names the bound health port")

	base := "http://" + rec.HealthAddr
	code, body := httpGet(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)
	code, body = httpGet(t, base+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	var ready struct {
		Ready bool `json:"ready"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &ready))
	assert.True(t, ready.Ready)
	code, body = httpGet(t, base+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "tiny_runs_total 1", "the service's own metrics are served")
	assert.Contains(t, body, "go_goroutines", "runtime metrics are served")

	require.Equal(t, daemon.ExitOK, r.stop(t), "stderr:\n%s", r.stderr.String())
	// Main revoked its lease before returning: no waiting for the TTL.
	recs, err := r.st.Services(t.Context(), "dc-t")
	require.NoError(t, err)
	assert.Empty(t, recs, "the registration must be gone when Main returns")
	ttl, err := r.st.Client().TimeToLive(t.Context(), clientv3.LeaseID(lease))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "the lease must be revoked")
	assert.Contains(t, r.stderr.String(), "stopped cleanly")

	// The health server is closed.
	_, err = (&http.Client{Timeout: 2 * time.Second}).Get(base + "/healthz")
	assert.Error(t, err)
}

func TestMainRegistersAgainAfterLeaseLoss(t *testing.T) {
	r := startTiny(t, "2s")
	rec, lease := r.registration(t)

	// Someone (an operator, a long partition) ends the lease: the process
	// notices and registers again on a new one.
	_, err := r.st.Client().Revoke(t.Context(), clientv3.LeaseID(lease))
	require.NoError(t, err)
	var again int64
	check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
		kv, err := r.st.Client().Get(t.Context(), r.st.Key("services", "dc-t", "tiny", "tiny-1"))
		if err != nil || len(kv.Kvs) != 1 {
			return check.That(false, "the service must register again on a new lease")
		}
		again = kv.Kvs[0].Lease
		// Env.Lease follows the new session, so keys the service writes
		// later go on the live lease.
		return check.That(again != lease && int64(r.env.Lease()) == again, "the service must register again on a new lease")
	})
	recs, err := r.st.Services(t.Context(), "dc-t")
	require.NoError(t, err)
	require.Equal(t, []state.ServiceRecord{rec}, recs)

	require.Equal(t, daemon.ExitOK, r.stop(t))
	recs, err = r.st.Services(t.Context(), "dc-t")
	require.NoError(t, err)
	assert.Empty(t, recs)
}
