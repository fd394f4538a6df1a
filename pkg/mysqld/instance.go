package mysqld

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Sentinel errors. Every error returned by this package that falls in one of
// these classes wraps the sentinel, so callers can test it with errors.Is.
var (
	// ErrNotInstalled means the MariaDB server binaries could not be found.
	ErrNotInstalled = errors.New("mysqld: mariadbd not found: run make deps")
	// ErrRunning means Start was called on an instance whose process still runs.
	ErrRunning = errors.New("mysqld: instance already running")
	// ErrNotRunning means the instance has no live process.
	ErrNotRunning = errors.New("mysqld: instance not running")
	// ErrNotReady means the server did not answer before the start deadline,
	// or exited while starting.
	ErrNotReady = errors.New("mysqld: server not ready")
	// ErrInit means mariadb-install-db failed.
	ErrInit = errors.New("mysqld: init failed")
	// ErrInvalidOptions means Options failed validation.
	ErrInvalidOptions = errors.New("mysqld: invalid options")
)

const (
	defaultHost         = "127.0.0.1"
	defaultStartTimeout = 60 * time.Second
	defaultStopTimeout  = 30 * time.Second
	readyPollInterval   = 50 * time.Millisecond
	// maxSocketPath keeps the unix socket path under the kernel's sun_path limit.
	maxSocketPath = 100
	// portAttempts bounds how often Start picks a new port when the one it
	// picked was taken in the meantime by someone else.
	portAttempts = 4
	// Names of the files and directories inside Options.Dir.
	dataDirName   = "data"
	tmpDirName    = "tmp"
	socketName    = "mysql.sock"
	pidName       = "mysqld.pid"
	errorLogName  = "error.log"
	initMarker    = "init.done"
	rootPassName  = "root-password"
	binlogBase    = "mysql-bin"
	relayLogBase  = "relay-bin"
	installDBName = "mariadb-install-db"
	serverName    = "mariadbd"
)

// smallFootprint returns server settings sized for many instances on a small
// box. They are passed to mariadb-install-db as well, so the redo log is
// created at its final size.
func smallFootprint() []string {
	return []string{
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=16M",
		"--innodb-log-buffer-size=4M",
		"--key-buffer-size=4M",
		"--aria-pagecache-buffer-size=8M",
		"--performance-schema=OFF",
	}
}

// Options configure one instance.
type Options struct {
	// Name identifies the instance in logs and errors. Defaults to "mysqld-<ServerID>".
	Name string
	// Dir is the instance root. The data directory (with binlogs and relay
	// logs, named relative to it), socket, pid file and error log live under it.
	// Required.
	Dir string
	// Host is the bind address, also used to connect. Defaults to 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free port below the kernel's ephemeral
	// range on first start (probed on 127.0.0.1, see package freeport; a port
	// found taken at boot is picked again) and keeps it for restarts.
	Port int
	// ServerID is the replication server_id. Required, > 0, unique per cluster.
	ServerID uint32
	// RootPassword for root over TCP. When empty a password is generated on the
	// first start and stored (mode 0600) in Dir, so a restarted lab reopens the
	// data directory.
	RootPassword string
	// Args are appended to the mariadbd command line after the defaults; a
	// later option wins in mariadbd, so they can override defaults.
	Args []string
	// SearchPath lists directories searched for the MariaDB binaries. Empty
	// means $PATH, then /usr/sbin and /usr/bin.
	SearchPath []string
	// StartTimeout bounds Start when ctx has no earlier deadline. Default 60 s.
	StartTimeout time.Duration
	// StopTimeout bounds the graceful part of Stop when ctx has no earlier
	// deadline; then the process is killed. Default 30 s.
	StopTimeout time.Duration
	// DieWithParent asks the kernel to SIGKILL mariadbd when the process that
	// started it dies (Linux only). Tests set it so a crashed test binary
	// leaves no servers behind.
	DieWithParent bool
	// Logger receives lifecycle events.
	Logger zerolog.Logger
}

// Instance is one MariaDB server with its data directory. Its methods are safe
// for concurrent use.
type Instance struct {
	opts     Options
	autoPort bool
	log      zerolog.Logger

	// opMu serialises Init, Start, Stop, Kill and Restart; mu guards the
	// fields below it.
	opMu      sync.Mutex
	portUsed  bool   // the server listened on port at least once
	serverBin string // path of mariadbd once found

	mu     sync.Mutex
	port   int
	rootPw string
	proc   *process
	admin  *sql.DB
}

// process is one run of mariadbd.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// New validates opts and returns an instance. It starts nothing.
func New(opts Options) (*Instance, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	}
	if opts.ServerID == 0 {
		return nil, fmt.Errorf("%w: ServerID must be > 0", ErrInvalidOptions)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d out of range", ErrInvalidOptions, opts.Port)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	opts.Dir = dir
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("mysqld-%d", opts.ServerID)
	}
	if opts.Host == "" {
		opts.Host = defaultHost
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = defaultStopTimeout
	}
	return &Instance{
		opts:     opts,
		autoPort: opts.Port == 0,
		port:     opts.Port,
		rootPw:   opts.RootPassword,
		log:      opts.Logger.With().Str("mysqld", opts.Name).Logger(),
	}, nil
}

// Name returns the instance name.
func (i *Instance) Name() string { return i.opts.Name }

// ServerID returns the configured server_id.
func (i *Instance) ServerID() uint32 { return i.opts.ServerID }

// Host returns the address the server binds to.
func (i *Instance) Host() string { return i.opts.Host }

// Port returns the TCP port (0 before the first Start when it was auto-picked).
func (i *Instance) Port() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.port
}

// Addr returns host:port.
func (i *Instance) Addr() string {
	return net.JoinHostPort(i.opts.Host, strconv.Itoa(i.Port()))
}

// Dir returns the instance root directory.
func (i *Instance) Dir() string { return i.opts.Dir }

// DataDir returns the server's data directory.
func (i *Instance) DataDir() string { return filepath.Join(i.opts.Dir, dataDirName) }

// ErrorLogPath returns the path of the server's error log.
func (i *Instance) ErrorLogPath() string { return filepath.Join(i.opts.Dir, errorLogName) }

// SocketPath returns the unix socket path. It is inside Dir unless that path
// would be too long for a unix socket, then it is in the system temp dir under
// a name derived from Dir.
func (i *Instance) SocketPath() string {
	p := filepath.Join(i.opts.Dir, socketName)
	if len(p) <= maxSocketPath {
		return p
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(i.opts.Dir))
	return filepath.Join(os.TempDir(), fmt.Sprintf("mysqld-%x.sock", h.Sum64()))
}

// RootPassword returns root's password; it is known after the first Start.
func (i *Instance) RootPassword() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rootPw
}

// Pid returns the server's process id, or 0 when it is not running.
func (i *Instance) Pid() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return 0
	}
	return i.proc.cmd.Process.Pid
}

// Running reports whether the server process is alive (it may be stopped by
// SIGSTOP).
func (i *Instance) Running() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runningLocked()
}

func (i *Instance) runningLocked() bool {
	if i.proc == nil {
		return false
	}
	select {
	case <-i.proc.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current process exits. Before the
// first Start it returns a closed channel.
func (i *Instance) Exited() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return i.proc.done
}

// Wait blocks until the current process exits and returns its exit status
// (nil for a clean exit), or ctx's error.
func (i *Instance) Wait(ctx context.Context) error {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil {
		return ErrNotRunning
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// initialized reports whether Init completed for this directory.
func (i *Instance) initialized() bool {
	_, err := os.Stat(filepath.Join(i.opts.Dir, initMarker))
	return err == nil
}

// Init creates the data directory with mariadb-install-db unless it was
// already created. A data directory left behind by an interrupted Init is
// removed and created again. Start runs it itself.
func (i *Instance) Init(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	return i.init(ctx)
}

// init is Init with opMu held. It also creates the instance's tmpdir, which
// every later boot uses.
func (i *Instance) init(ctx context.Context) error {
	if _, err := i.serverBinary(); err != nil {
		return err
	}
	// Each instance gets its own tmpdir: parallel mariadb-install-db runs
	// sharing /tmp collide on their temporary table names.
	tmp := filepath.Join(i.opts.Dir, tmpDirName)
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInit, i.opts.Name, err)
	}
	if i.initialized() {
		return nil
	}
	installDB, err := i.lookBinary(installDBName)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(i.DataDir()); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInit, i.opts.Name, err)
	}
	args := []string{
		"--no-defaults",
		"--user=root",
		"--datadir=" + i.DataDir(),
		"--tmpdir=" + tmp,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	}
	args = append(args, smallFootprint()...)
	started := time.Now()
	out, err := exec.CommandContext(ctx, installDB, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s: %s: %w\n%s", ErrInit, i.opts.Name, installDBName, err, tail(string(out), 20))
	}
	if err := os.WriteFile(filepath.Join(i.opts.Dir, initMarker), nil, 0o600); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInit, i.opts.Name, err)
	}
	i.log.Debug().Dur("took", time.Since(started)).Msg("data directory initialized")
	return nil
}

// serverBinary returns the path of mariadbd, looked up on first use and
// remembered. Call it with opMu held.
func (i *Instance) serverBinary() (string, error) {
	if i.serverBin != "" {
		return i.serverBin, nil
	}
	bin, err := i.lookBinary(serverName)
	if err != nil {
		return "", err
	}
	i.serverBin = bin
	return bin, nil
}

// lookBinary finds name in the search path.
func (i *Instance) lookBinary(name string) (string, error) {
	dirs := i.opts.SearchPath
	if len(dirs) == 0 {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		dirs = []string{"/usr/sbin", "/usr/bin"}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if name == serverName {
		return "", ErrNotInstalled
	}
	return "", fmt.Errorf("%w (%s missing)", ErrNotInstalled, name)
}

// loadRootPassword returns root's password for this data directory, choosing
// and storing one on the first start.
func (i *Instance) loadRootPassword() (string, error) {
	path := filepath.Join(i.opts.Dir, rootPassName)
	stored, err := os.ReadFile(path)
	switch {
	case err == nil:
		if i.opts.RootPassword != "" {
			return i.opts.RootPassword, nil
		}
		return strings.TrimSpace(string(stored)), nil
	case errors.Is(err, os.ErrNotExist):
	default:
		return "", err
	}
	pw := i.opts.RootPassword
	if pw == "" {
		if pw, err = RandomPassword(); err != nil {
			return "", err
		}
	}
	// Stored before root is given it: a start that fails in between finds
	// root without a password next time and sets it then (see boot); the
	// other order could lose the password.
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// RandomPassword returns 32 random hex characters.
func RandomPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("mysqld: random password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
