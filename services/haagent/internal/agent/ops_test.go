package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/freeport"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/agent"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// TestSwitchoverIntent: an operator's intent is carried out by the active
// agent under writes: no write lost, block window recorded, intent DONE.
func TestSwitchoverIntent(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	a1 := startAgent(t, e, testConfig(e, "agent-1"), nil)
	leader(t, a1)
	w := e.StartWriter()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "acknowledged writes") })
	ctx := context.Background()
	to := e.DB.Replicas[1].Name()
	_, err := e.Store.CreateSwitchover(ctx, state.SwitchoverIntent{ID: "sw-1", DC: hatest.DC, Cluster: hatest.Cluster,
		To: to, RequestedBy: "tester", RequestedAt: time.Now().UTC(), State: state.SwitchoverPending})
	require.NoError(t, err)
	var in state.SwitchoverIntent
	check.For(t, 20*time.Second, check.Every, func() error {
		in, _, err = e.Store.Switchover(ctx, hatest.DC, hatest.Cluster)
		if err != nil {
			return err
		}
		return check.That((in.State == state.SwitchoverDone || in.State == state.SwitchoverFailed), "the switchover done")
	})
	require.Equal(t, state.SwitchoverDone, in.State, in.Error)
	rec, _ := e.Master()
	assert.Equal(t, to, rec.Instance)
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 60, "writes on the new master") })
	acked, _ := w.Stop()
	missing, err := e.MissingAcked(rec.Addr, acked)
	require.NoError(t, err)
	assert.Empty(t, missing)
	recs := failovers(t, e)
	require.Len(t, recs, 1)
	assert.Equal(t, in.RecordID, recs[0].ID)
	assert.Equal(t, state.KindSwitchover, recs[0].Kind)
	assert.Positive(t, recs[0].BlockWindow)
	t.Logf("switchover block window %s", time.Duration(recs[0].BlockWindow))
	check.For(t, 10*time.Second, check.Every, func() error {
		return check.That(replicatesFrom(e, e.DB.Master, rec.Addr), "the old master replicating from the new one")
	})
	// A second intent while none is pending is accepted; a bad target fails.
	_, err = e.Store.CreateSwitchover(ctx, state.SwitchoverIntent{ID: "sw-2", DC: hatest.DC, Cluster: hatest.Cluster,
		To: "db9", RequestedBy: "tester", RequestedAt: time.Now().UTC(), State: state.SwitchoverPending})
	require.NoError(t, err)
	check.For(t, 10*time.Second, check.Every, func() error {
		in, _, err = e.Store.Switchover(ctx, hatest.DC, hatest.Cluster)
		if err != nil {
			return err
		}
		return check.That(in.ID == "sw-2" && in.State == state.SwitchoverFailed, "the bad switchover refused")
	})
	assert.Contains(t, in.Error, "db9")
}

// TestKillSwitchHoldsFailover: with the DC's kill switch set, a dead
// master is not failed over; clearing it lets the failover run.
func TestKillSwitchHoldsFailover(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	a1 := startAgent(t, e, testConfig(e, "agent-1"), nil)
	leader(t, a1)
	ctx := context.Background()
	require.NoError(t, e.Store.PutKillSwitch(ctx, state.KillSwitch{Scope: state.KillSwitchScope(hatest.DC, ""),
		Reason: "maintenance", SetBy: "tester", SetAt: time.Now().UTC()}))
	old := e.DB.Master
	require.NoError(t, old.Kill())
	check.Hold(t, 2*time.Second, 100*time.Millisecond, func() error {
		if rec, _ := e.Master(); rec.Instance != old.Name() {
			return fmt.Errorf("failed over despite the kill switch, to %s", rec.Instance)
		}
		return nil
	})
	require.NoError(t, e.Store.DeleteKillSwitch(ctx, state.KillSwitchScope(hatest.DC, "")))
	rec := masterChanged(t, e, old.Name(), 10*time.Second)
	t.Logf("failed over to %s once the kill switch was cleared", rec.Instance)
}

// TestActiveAgentCrashMidRecovery: the active agent (a real process) is
// killed -9 in the middle of a failover, after it claimed the cluster and
// while its pre-failover hook runs; the standby takes over after the lease
// TTL, closes the interrupted record and does the failover.
func TestActiveAgentCrashMidRecovery(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	bin := haagentBinary(t)
	dir := t.TempDir()
	started := filepath.Join(dir, "hook-started")
	cfg := testConfig(e, "agent-proc")
	cfg.Hooks.PreFailover = [][]string{{"sh", "-c", "touch " + started + "; exec sleep 20"}}
	cfg.Hooks.Timeout = 30 * time.Second
	proc := startProcess(t, e, bin, dir, cfg)
	check.For(t, 15*time.Second, check.Every, func() error {
		resp, err := e.Cli.Get(context.Background(), e.Store.Prefix("agents", hatest.DC, "election"),
			clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			return err
		}
		return check.That(len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == "agent-proc", "the process agent leading")
	})
	standby := startAgent(t, e, testConfig(e, "agent-standby"), nil)

	old := e.DB.Master
	require.NoError(t, old.Kill())
	check.For(t, 15*time.Second, check.Every, func() error {
		if _, err := os.Stat(started); err != nil {
			return fmt.Errorf("the pre-failover hook running: %w", err)
		}
		return nil
	})
	recs := failovers(t, e)
	require.Len(t, recs, 1)
	require.Equal(t, state.OutcomeRunning, recs[0].Outcome)
	require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
	crashed := time.Now()
	_, _ = proc.Process.Wait()

	rec := masterChanged(t, e, old.Name(), 20*time.Second)
	t.Logf("standby promoted %s %s after the active agent was killed", rec.Instance, time.Since(crashed))
	assert.True(t, standby.a.Elector().IsLeader())
	check.For(t, 10*time.Second, check.Every, func() error {
		recs = failovers(t, e)
		return check.That(len(recs) == 2 && recs[1].Done(), "the standby's failover record finished")
	})
	assert.Equal(t, state.OutcomeFailed, recs[0].Outcome)
	assert.Contains(t, recs[0].Error, "interrupted")
	assert.Equal(t, state.OutcomeSucceeded, recs[1].Outcome)
	assert.Equal(t, "agent-standby", recs[1].Agent)
	// The runner audits after it saved the final record: wait for the event.
	check.For(t, 10*time.Second, check.Every, func() error {
		evs, err := audit.NewOutbox(e.Store).List(context.Background(), 0)
		if err != nil {
			return err
		}
		var actions []string
		for _, ev := range evs {
			if ev.Action == "failover.automatic" {
				return nil
			}
			actions = append(actions, ev.Action)
		}
		return fmt.Errorf("no failover.automatic audit event yet, only %v", actions)
	})
}

// haagentBinary returns $DRPLANE_BIN/haagent when set, else builds it.
func haagentBinary(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DRPLANE_BIN"); d != "" {
		return filepath.Join(d, "haagent")
	}
	bin := filepath.Join(t.TempDir(), "haagent")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/drplane/drplane/services/haagent/cmd/haagent").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startProcess runs the haagent binary with cfg; it is killed when the
// test ends.
func startProcess(t *testing.T, e *hatest.Env, bin, dir string, cfg *agent.Config) *exec.Cmd {
	t.Helper()
	ports, err := freeport.Pick(1)
	require.NoError(t, err)
	raw, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &m))
	m["health_addr"] = "127.0.0.1:" + strconv.Itoa(ports[0])
	// Secrets marshal redacted: spell them out.
	m["mysql"] = map[string]any{"user": cfg.MySQL.User, "password": cfg.MySQL.Password.Reveal(),
		"repl_user": cfg.MySQL.ReplUser, "repl_password": cfg.MySQL.ReplPassword.Reveal()}
	m["etcd"] = map[string]any{"endpoints": e.Etcd.Endpoints()}
	m["log"] = map[string]any{"level": "info", "format": "json"}
	raw, err = yaml.Marshal(m)
	require.NoError(t, err)
	path := filepath.Join(dir, "haagent.yaml")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	cmd := exec.Command(bin, "--config", path)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// The kernel kills it if the test binary dies without its cleanups
	// (a test timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			t.Logf("haagent process log:\n%s", logs.String())
		}
	})
	return cmd
}
