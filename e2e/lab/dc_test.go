package lab

import (
	"bytes"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/labfile"
)

// TestLabDCKillStart takes a whole DC of a running lab away (drlab dc kill:
// every process of it killed, its etcd member and NATS server stopped) and
// brings it back (drlab dc start); the DC's cluster must then be healthy
// again, and the lab must stop every process, the new ones included.
func TestLabDCKillStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 9 mysqld and 15 services")
	}
	bin := bins(t)
	dir := filepath.Join(t.TempDir(), "lab")
	var out bytes.Buffer
	up := exec.Command(filepath.Join(bin, "drlab"), "up", "--dir", dir)
	up.Stdout, up.Stderr = &out, &out
	up.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, up.Start())
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = up.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = up.Process.Kill()
			}
			_ = exec.Command(filepath.Join(bin, "drlab"), "down", "--dir", dir).Run()
		}
	})
	labJSON := filepath.Join(dir, "lab.json")
	check.For(t, 120*time.Second, 100*time.Millisecond, func() error {
		select {
		case err := <-exited:
			t.Fatalf("drlab exited early: %v\n%s", err, out.String())
		default:
		}
		_, err := os.Stat(labJSON)
		return err
	})
	before, err := labfile.Read(labJSON)
	require.NoError(t, err)
	const lost = "dc-b1"
	idx := -1
	for i, d := range before.DCs {
		if d.Name == lost {
			idx = i
		}
	}
	require.GreaterOrEqual(t, idx, 0)
	requireHealthy(t, bin, labJSON, lost)

	drlab := func(args ...string) string {
		cmd := exec.Command(filepath.Join(bin, "drlab"), append(args, "--dir", dir)...)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "drlab %v: %s", args, b)
		return string(b)
	}
	killed := drlab("dc", "kill", lost)
	t.Logf("drlab dc kill %s:\n%s", lost, killed)
	dc := before.DCs[idx]
	for _, m := range dc.MySQL {
		require.Contains(t, killed, m.Name+" killed")
		require.False(t, processAlive(m.Pid), "%s (pid %d) alive after the DC was killed", m.Name, m.Pid)
	}
	for _, s := range dc.Services {
		require.False(t, processAlive(s.Pid), "%s/%s (pid %d) alive after the DC was killed", lost, s.Name, s.Pid)
	}
	require.Contains(t, killed, "etcd member "+lost+" stopped")
	require.Contains(t, killed, "NATS server "+lost+" stopped")
	nats, err := url.Parse(dc.NATS)
	require.NoError(t, err)
	requireRefused(t, nats.Host)
	etcd, err := url.Parse(before.Etcd[idx])
	require.NoError(t, err)
	requireRefused(t, etcd.Host)
	// The other DCs go on.
	requireHealthy(t, bin, labJSON, "dc-a1")

	require.Contains(t, drlab("dc", "start", lost), lost+" started")
	requireHealthy(t, bin, labJSON, lost)
	after, err := labfile.Read(labJSON)
	require.NoError(t, err)
	for _, s := range after.DCs[idx].Services {
		require.True(t, processAlive(s.Pid), "%s/%s (pid %d) not running after the DC was started", lost, s.Name, s.Pid)
	}

	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "drlab exit:\n%s", out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("drlab did not stop:\n%s", out.String())
	}
	stopped = true
	for _, d := range after.DCs {
		for _, m := range d.MySQL {
			require.Falsef(t, processAlive(m.Pid), "%s (pid %d) alive after drlab stopped", m.Name, m.Pid)
		}
		for _, s := range d.Services {
			require.Falsef(t, processAlive(s.Pid), "%s/%s (pid %d) alive after drlab stopped", d.Name, s.Name, s.Pid)
		}
	}
}

// requireHealthy waits until drctl status shows dc's cluster OK.
func requireHealthy(t *testing.T, bin, labJSON, dc string) {
	t.Helper()
	check.For(t, 60*time.Second, 250*time.Millisecond, func() error {
		stdout, _, _ := drctl(t, bin, labJSON, "status", "--dc", dc, "-o", "json")
		var st status
		if json.Unmarshal([]byte(stdout), &st) != nil || len(st.Dcs) != 1 || len(st.Dcs[0].Clusters) != 1 {
			return check.That(false, "drctl status of %s: %s", dc, strings.TrimSpace(stdout))
		}
		cl := st.Dcs[0].Clusters[0]
		return check.That(cl.Health == "OK", "%s/%s health %s", dc, cl.Name, cl.Health)
	})
}

// requireRefused requires that nothing listens on addr.
func requireRefused(t *testing.T, addr string) {
	t.Helper()
	check.For(t, 10*time.Second, 100*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return check.That(err != nil, "%s still accepts connections", addr)
	})
}
