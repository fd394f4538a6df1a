package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
)

// TestMain lets the test binary stand in for a mariadbd: run under that
// name it just waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv("DRLAB_FAKE_MYSQLD") == "1" {
		select {}
	}
	os.Exit(m.Run())
}

// fakeMysqld starts a process called mariadbd with the instance's data
// directory on its command line and writes its pid file.
func fakeMysqld(t *testing.T, dir, name string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "mariadbd")
	require.NoError(t, os.Symlink(self, bin))
	base := filepath.Join(dir, "mysql", name)
	require.NoError(t, os.MkdirAll(base, 0o755))
	cmd := exec.Command(bin, "--no-defaults", "--datadir="+filepath.Join(base, "data"))
	cmd.Env = append(os.Environ(), "DRLAB_FAKE_MYSQLD=1")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.NoError(t, os.WriteFile(filepath.Join(base, "mysqld.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644))
	return cmd
}

// TestFenceKillsTheInstance: a running (here also stopped) instance is
// killed and gone when Fence returns; fencing it again finds nothing.
func TestFenceKillsTheInstance(t *testing.T) {
	dir := t.TempDir()
	cmd := fakeMysqld(t, dir, "dc-a1-db1")
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	got, err := Fence(dir, "dc-a1-db1", 5*time.Second)
	require.NoError(t, err)
	assert.Contains(t, got, "killed")
	check.For(t, 5*time.Second, check.Every, func() error {
		select {
		case <-exited:
			return nil
		default:
			return check.That(false, "the fenced process exited")
		}
	})
	got, err = Fence(dir, "dc-a1-db1", time.Second)
	require.NoError(t, err)
	assert.Contains(t, got, "not running")

	// Without a wait it returns once the signal is delivered.
	again := fakeMysqld(t, dir, "dc-a1-db3")
	gone := make(chan struct{})
	go func() { _ = again.Wait(); close(gone) }()
	got, err = Fence(dir, "dc-a1-db3", 0)
	require.NoError(t, err)
	assert.Contains(t, got, "killed")
	check.For(t, 5*time.Second, check.Every, func() error {
		select {
		case <-gone:
			return nil
		default:
			return check.That(false, "the killed process exited")
		}
	})
}

// TestFenceSparesOtherProcesses: a pid file naming a process that is not
// the instance's mariadbd (a stale pid reused) kills nothing; an unknown
// instance or a bad name is an error.
func TestFenceSparesOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	other := fakeMysqld(t, dir, "dc-a1-db2")
	base := filepath.Join(dir, "mysql", "dc-a1-db1")
	require.NoError(t, os.MkdirAll(base, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "mysqld.pid"), []byte(strconv.Itoa(other.Process.Pid)), 0o644))
	got, err := Fence(dir, "dc-a1-db1", time.Second)
	require.NoError(t, err)
	assert.Contains(t, got, "not running")
	assert.True(t, alive(other.Process.Pid), "another instance's process was killed")

	_, err = Fence(dir, "dc-a1-db9", time.Second)
	require.Error(t, err)
	_, err = Fence(dir, "../x", time.Second)
	require.Error(t, err)
}
