package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/mysqld"
)

// fenceStartTimeout bounds starting the test's servers (a loaded 2-core
// machine included); a healthy one is ready in about a second.
const fenceStartTimeout = 90 * time.Second

// startLabMysqld starts real mariadbd processes laid out as the lab lays
// them out (dir/mysql/<name>, whose pid file mariadbd itself writes), in
// parallel. Each is killed when the test ends, and with DieWithParent the
// kernel kills it if the test binary dies first.
func startLabMysqld(t *testing.T, dir string, names ...string) []*mysqld.Instance {
	t.Helper()
	insts := make([]*mysqld.Instance, len(names))
	for n, name := range names {
		inst, err := mysqld.New(mysqld.Options{
			Name:          name,
			Dir:           filepath.Join(dir, "mysql", name),
			ServerID:      uint32(n + 1),
			StartTimeout:  fenceStartTimeout,
			DieWithParent: true,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = inst.Kill() })
		insts[n] = inst
	}
	ctx, cancel := context.WithTimeout(context.Background(), fenceStartTimeout)
	defer cancel()
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for n, inst := range insts {
		wg.Go(func() { errs[n] = inst.Start(ctx) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	for _, inst := range insts {
		require.FileExists(t, filepath.Join(inst.Dir(), "mysqld.pid"), "mariadbd wrote no pid file")
	}
	return insts
}

// exitedWithin fails the test unless inst's process has exited within d.
// The wait ends as soon as the process is reaped; d only bounds a fence
// that did not work.
func exitedWithin(t *testing.T, inst *mysqld.Instance, d time.Duration, what string) {
	t.Helper()
	select {
	case <-inst.Exited():
	case <-time.After(d):
		t.Fatalf("%s: %s (pid %d) still running %s after the fence", what, inst.Name(), inst.Pid(), d)
	}
}

// TestFenceKillsTheInstance proves on real mariadbd processes that Fence
// kills the instance it names: one stopped by SIGSTOP (which no SIGTERM
// would end) has exited when Fence returns with a wait, fencing it again
// finds it not running, and without a wait Fence returns once SIGKILL is
// delivered and the process then exits. It cannot flake on a loaded
// machine: Fence waits for the exit itself (its wait bounds only a kill
// that did not work), and the process exits are observed, not timed.
func TestFenceKillsTheInstance(t *testing.T) {
	dir := t.TempDir()
	insts := startLabMysqld(t, dir, "dc-a1-db1", "dc-a1-db3")
	stopped, running := insts[0], insts[1]

	require.NoError(t, stopped.Signal(syscall.SIGSTOP))
	got, err := Fence(dir, "dc-a1-db1", time.Minute)
	require.NoError(t, err)
	assert.Contains(t, got, "killed")
	// Fence saw the pid gone (reaped by its parent, this test binary), so
	// the exit is observed here promptly.
	exitedWithin(t, stopped, time.Minute, "fence with a wait")
	got, err = Fence(dir, "dc-a1-db1", time.Second)
	require.NoError(t, err)
	assert.Contains(t, got, "not running")

	// Without a wait it returns once the signal is delivered.
	got, err = Fence(dir, "dc-a1-db3", 0)
	require.NoError(t, err)
	assert.Contains(t, got, "killed")
	exitedWithin(t, running, time.Minute, "fence without a wait")
}

// TestFenceSparesOtherProcesses proves that a pid file naming a process
// that is not the instance's mariadbd (a stale pid now used by another
// instance's real mariadbd) kills nothing, and that an unknown instance
// or a bad name is an error. Nothing in it waits on timing.
func TestFenceSparesOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	other := startLabMysqld(t, dir, "dc-a1-db2")[0]
	pid := other.Pid()
	require.Positive(t, pid)
	base := filepath.Join(dir, "mysql", "dc-a1-db1")
	require.NoError(t, os.MkdirAll(base, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "mysqld.pid"), []byte(strconv.Itoa(pid)), 0o644))
	got, err := Fence(dir, "dc-a1-db1", time.Second)
	require.NoError(t, err)
	assert.Contains(t, got, "not running")
	assert.True(t, other.Running(), "another instance's process was killed")
	assert.True(t, alive(pid), "another instance's process was killed")

	_, err = Fence(dir, "dc-a1-db9", time.Second)
	require.Error(t, err)
	_, err = Fence(dir, "../x", time.Second)
	require.Error(t, err)
}
