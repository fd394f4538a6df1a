package mysqld

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewValidates(t *testing.T) {
	_, err := New(Options{ServerID: 1})
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = New(Options{Dir: t.TempDir()})
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = New(Options{Dir: t.TempDir(), ServerID: 1, Port: 70000})
	require.ErrorIs(t, err, ErrInvalidOptions)

	inst, err := New(Options{Dir: "rel", ServerID: 7})
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(inst.Dir()))
	require.Equal(t, "mysqld-7", inst.Name())
	require.Equal(t, "127.0.0.1", inst.Host())
	require.False(t, inst.Running())
	require.Zero(t, inst.Pid())
	<-inst.Exited() // closed before the first start
	require.ErrorIs(t, inst.Wait(context.Background()), ErrNotRunning)
	_, err = inst.Admin(context.Background())
	require.ErrorIs(t, err, ErrNotRunning)
	require.NoError(t, inst.Stop(context.Background()))
	require.NoError(t, inst.Kill())
}

func TestNotInstalled(t *testing.T) {
	dir := t.TempDir()
	inst, err := New(Options{Dir: filepath.Join(dir, "db"), ServerID: 1, SearchPath: []string{dir}})
	require.NoError(t, err)
	err = inst.Start(context.Background())
	require.ErrorIs(t, err, ErrNotInstalled)
	require.Contains(t, err.Error(), "mariadbd not found: run make deps")
	require.ErrorIs(t, inst.Init(context.Background()), ErrNotInstalled)
}

func TestServerArgs(t *testing.T) {
	inst, err := New(Options{Dir: t.TempDir(), ServerID: 3, Port: 4000, Args: []string{"--read-only=0"}})
	require.NoError(t, err)
	args := inst.serverArgs([]string{"--init-rpl-role=SLAVE"})
	require.Equal(t, "--no-defaults", args[0], "--no-defaults must come first")
	for _, want := range []string{"--read-only=1", "--server-id=3", "--port=4000", "--bind-address=127.0.0.1",
		"--log-slave-updates=1", "--gtid-strict-mode=1", "--binlog-format=ROW", "--binlog-row-metadata=FULL",
		"--skip-name-resolve", "--user=root"} {
		require.Contains(t, args, want)
	}
	// Options.Args and then the per-boot args come last, so they win.
	require.Equal(t, []string{"--read-only=0", "--init-rpl-role=SLAVE"}, args[len(args)-2:])
	require.Less(t, slices.Index(args, "--read-only=1"), slices.Index(args, "--read-only=0"))
}

func TestSocketPathStaysShort(t *testing.T) {
	short, err := New(Options{Dir: "/tmp/x", ServerID: 1})
	require.NoError(t, err)
	require.Equal(t, "/tmp/x/mysql.sock", short.SocketPath())

	long, err := New(Options{Dir: "/tmp/" + strings.Repeat("d", 120), ServerID: 1})
	require.NoError(t, err)
	p := long.SocketPath()
	require.LessOrEqual(t, len(p), maxSocketPath)
	require.Equal(t, p, long.SocketPath(), "must be stable across calls")
	other, err := New(Options{Dir: "/tmp/" + strings.Repeat("e", 120), ServerID: 1})
	require.NoError(t, err)
	require.NotEqual(t, p, other.SocketPath())
}

func TestRootPasswordPersists(t *testing.T) {
	dir := t.TempDir()
	inst, err := New(Options{Dir: dir, ServerID: 1})
	require.NoError(t, err)
	pw, err := inst.loadRootPassword()
	require.NoError(t, err)
	require.Len(t, pw, 32)
	st, err := os.Stat(filepath.Join(dir, rootPassName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	again, err := New(Options{Dir: dir, ServerID: 1})
	require.NoError(t, err)
	pw2, err := again.loadRootPassword()
	require.NoError(t, err)
	require.Equal(t, pw, pw2)

	given, err := New(Options{Dir: t.TempDir(), ServerID: 1, RootPassword: "s3cret"})
	require.NoError(t, err)
	pw3, err := given.loadRootPassword()
	require.NoError(t, err)
	require.Equal(t, "s3cret", pw3)
}

func TestLogHelpers(t *testing.T) {
	require.Equal(t, "c\nd", tail("a\nb\nc\nd\n", 2))
	require.Equal(t, "a", tail("a", 5))

	path := filepath.Join(t.TempDir(), "error.log")
	require.NoError(t, os.WriteFile(path, []byte("old boot\n"), 0o600))
	st, err := os.Stat(path)
	require.NoError(t, err)
	off := st.Size()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("new boot\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "new boot\n", readFrom(path, off))
	require.Equal(t, "old boot\nnew boot\n", readFrom(path, 0))
	require.Equal(t, "old boot\nnew boot\n", readFrom(path, 1<<20), "an offset past the end reads from the start")
	require.Empty(t, readFrom(filepath.Join(t.TempDir(), "missing.log"), 0))

	big := strings.Repeat("x", maxLogRead) + "end\n"
	require.NoError(t, os.WriteFile(path, []byte(big), 0o600))
	got := readFrom(path, 0)
	require.Len(t, got, maxLogRead, "at most maxLogRead bytes")
	require.Equal(t, big[len(big)-maxLogRead:], got, "the end is kept")
}

func TestExitWhileStarting(t *testing.T) {
	inst, err := New(Options{Dir: t.TempDir(), ServerID: 1, DieWithParent: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = inst.Kill() })
	// --version makes mariadbd print its version and exit with status 0.
	err = inst.Start(t.Context(), "--version")
	require.ErrorIs(t, err, ErrNotReady)
	require.ErrorIs(t, err, errExitedCleanly)
	require.Contains(t, err.Error(), "exited while starting (exit status 0)")
	require.NotContains(t, err.Error(), "%!")
	require.False(t, inst.Running())
	require.NotZero(t, inst.Port(), "the auto-picked port is kept")
}
