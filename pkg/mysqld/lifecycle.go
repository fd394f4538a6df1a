package mysqld

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/drplane/drplane/pkg/freeport"
)

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("mysqld: port in use")

// errRootNotSet marks a server whose root account has no password yet.
var errRootNotSet = errors.New("mysqld: root password not set")

// Start boots the server and returns once it answers a ping over TCP as root.
// It runs Init first when the data directory does not exist yet. The server
// always boots with read_only=1; extraArgs are added to the command line for
// this boot only (after Options.Args). On a readiness failure the error
// carries the tail of the error log.
func (i *Instance) Start(ctx context.Context, extraArgs ...string) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	return i.start(ctx, extraArgs)
}

// Restart stops the server if it runs (gracefully, see Stop) and starts it
// again on the same data directory and port.
func (i *Instance) Restart(ctx context.Context, extraArgs ...string) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if err := i.stop(ctx); err != nil {
		return err
	}
	return i.start(ctx, extraArgs)
}

func (i *Instance) start(ctx context.Context, extraArgs []string) error {
	if i.Running() {
		return fmt.Errorf("%w: %s", ErrRunning, i.opts.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, i.opts.StartTimeout)
	defer cancel()
	if err := i.init(ctx); err != nil {
		return err
	}
	bin, err := i.serverBinary()
	if err != nil {
		return err
	}
	pw, err := i.loadRootPassword()
	if err != nil {
		return fmt.Errorf("mysqld: %s: root password: %w", i.opts.Name, err)
	}
	i.mu.Lock()
	i.rootPw = pw
	i.mu.Unlock()

	for attempt := 1; ; attempt++ {
		// A port is only re-picked before the server ever listened on it;
		// afterwards replicas and clients know it.
		repick := i.autoPort && !i.portUsed
		if repick && (i.Port() == 0 || attempt > 1) {
			ports, err := freeport.Pick(1)
			if err != nil {
				return fmt.Errorf("mysqld: %s: %w", i.opts.Name, err)
			}
			i.mu.Lock()
			i.port = ports[0]
			i.mu.Unlock()
		}
		err := i.boot(ctx, bin, extraArgs, pw)
		if err == nil {
			i.portUsed = true
			return nil
		}
		if !repick || attempt >= portAttempts || !errors.Is(err, errPortInUse) {
			return err
		}
		i.log.Warn().Int("port", i.Port()).Msg("port taken, picking another")
	}
}

// KeepBinlogTail is the extra argument (for Start) that boots an instance
// whose crash recovery must commit its binlogged tail instead of
// truncating it: the master of a cluster restarted while it still is the
// cluster's master, as after the loss of a whole DC. With binary logging,
// InnoDB does not flush a commit's own redo record (the binlog is the
// recovery's source), so after a kill -9 a commit that semi-sync had
// acknowledged and the client had seen can be left only prepared; the
// replica role then truncates it, and when the replicas were restarted
// too (a GTID replica discards its relay log) no instance keeps it, though
// other DCs may have applied it.
const KeepBinlogTail = "--init-rpl-role=MASTER"

// serverArgs is the mariadbd command line.
func (i *Instance) serverArgs(extraArgs []string) []string {
	port := strconv.Itoa(i.Port())
	args := []string{
		"--no-defaults",
		"--user=root",
		"--datadir=" + i.DataDir(),
		"--socket=" + i.SocketPath(),
		"--pid-file=" + filepath.Join(i.opts.Dir, pidName),
		"--log-error=" + i.ErrorLogPath(),
		"--tmpdir=" + filepath.Join(i.opts.Dir, tmpDirName),
		"--bind-address=" + i.opts.Host,
		"--port=" + port,
		"--report-host=" + i.opts.Host,
		"--report-port=" + port,
		"--skip-name-resolve",
		"--server-id=" + strconv.FormatUint(uint64(i.opts.ServerID), 10),
		// Relative names keep binlogs and relay logs in the data directory
		// and their index files free of absolute paths, so a copied data
		// directory never points back at the original's logs.
		"--log-bin=" + binlogBase,
		"--relay-log=" + relayLogBase,
		"--binlog-format=ROW",
		"--binlog-row-metadata=FULL",
		"--log-slave-updates=1",
		"--gtid-strict-mode=1",
		// Every instance boots read-only: only the active agent (or the
		// bootstrap) makes a master writable.
		"--read-only=1",
		// Acking as a semi-sync replica is harmless on a master, so every
		// instance acks from its first connection to any master.
		"--rpl-semi-sync-slave-enabled=ON",
		// Booting in the replica role makes crash recovery truncate the
		// transactions a killed master wrote to its binlog and had not
		// committed in InnoDB, so a deposed master rejoins without errant
		// GTIDs. That tail can hold acknowledged commits (see
		// KeepBinlogTail): it is safe to drop only when another instance
		// has it, the master that replaced this one.
		"--init-rpl-role=SLAVE",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--max-connections=300",
		"--table-open-cache=400",
		"--table-definition-cache=400",
	}
	args = append(args, smallFootprint()...)
	args = append(args, i.opts.Args...)
	return append(args, extraArgs...)
}

// boot spawns mariadbd once and waits until it is ready.
func (i *Instance) boot(ctx context.Context, bin string, extraArgs []string, pw string) error {
	logFile, err := os.OpenFile(i.ErrorLogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("mysqld: %s: %w", i.opts.Name, err)
	}
	defer func() { _ = logFile.Close() }()
	// This boot's lines start where the log ends now.
	st, err := logFile.Stat()
	if err != nil {
		return fmt.Errorf("mysqld: %s: %w", i.opts.Name, err)
	}
	logOffset := st.Size()

	// Not CommandContext: the server outlives the start context.
	cmd := exec.Command(bin, i.serverArgs(extraArgs)...)
	cmd.Dir = i.opts.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(i.opts.DieWithParent)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, i.opts.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	i.mu.Lock()
	i.proc = p
	i.mu.Unlock()
	go i.reap(p)

	err = i.waitReady(ctx, p, pw)
	if errors.Is(err, errRootNotSet) {
		if err = i.setupRoot(ctx, pw); err == nil {
			err = i.waitReady(ctx, p, pw)
		}
	}
	if err != nil {
		i.killProc(p)
		logTail := tail(readFrom(i.ErrorLogPath(), logOffset), 25)
		if strings.Contains(logTail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("%w\nerror log of %s:\n%s", err, i.opts.Name, logTail)
	}
	i.log.Info().Int("pid", cmd.Process.Pid).Str("addr", i.Addr()).
		Dur("took", time.Since(started)).Msg("mariadbd ready")
	return nil
}

// reap waits for the process and records its exit.
func (i *Instance) reap(p *process) {
	err := p.cmd.Wait()
	p.err = err
	i.log.Debug().Int("pid", p.cmd.Process.Pid).AnErr("exit", err).Msg("mariadbd exited")
	close(p.done)
}

// waitReady pings the server as root over TCP until it answers.
func (i *Instance) waitReady(ctx context.Context, p *process, pw string) error {
	db, err := i.openDB(i.tcpConfig("root", pw, ""))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if isMySQLError(err, errnoAccessDenied) {
			return fmt.Errorf("%w: %w", errRootNotSet, err)
		}
		lastErr = err
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited while starting (%w)", ErrNotReady, i.opts.Name, exitCause(p.err))
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w (last ping error: %w)", ErrNotReady, i.opts.Name, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// errExitedCleanly stands for the exit status of a server that exited with
// status 0 where an exit is an error.
var errExitedCleanly = errors.New("exit status 0")

// exitCause returns a process's exit error, never nil.
func exitCause(err error) error {
	if err == nil {
		return errExitedCleanly
	}
	return err
}

// setupRoot gives root its password over the unix socket and drops root
// accounts for host names (unusable with skip-name-resolve). Nothing of it is
// written to the binlog: it is local to this instance.
func (i *Instance) setupRoot(ctx context.Context, pw string) error {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = i.SocketPath()
	cfg.Timeout = 5 * time.Second
	cfg.Params = map[string]string{"sql_log_bin": "0"}
	db, err := i.openDB(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	hosts, err := rootHosts(ctx, db)
	if err != nil {
		return fmt.Errorf("%w: %s: root setup over socket: %w", ErrNotReady, i.opts.Name, err)
	}
	var stmts []string
	for _, h := range hosts {
		acct := account("root", h)
		switch h {
		case "localhost", "127.0.0.1", "::1":
			stmts = append(stmts, "ALTER USER "+acct+" IDENTIFIED BY "+quoteString(pw))
		default:
			stmts = append(stmts, "DROP USER "+acct)
		}
	}
	if err := execAll(ctx, db, stmts...); err != nil {
		return fmt.Errorf("%w: %s: root setup: %w", ErrNotReady, i.opts.Name, err)
	}
	i.log.Debug().Msg("root password set")
	return nil
}

// rootHosts lists the hosts of the root accounts.
func rootHosts(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = 'root'")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, rows.Err()
}

// Stop shuts the server down with SIGTERM and waits for it to exit; when ctx
// ends (or Options.StopTimeout passes) first, it kills it. Stop on a server
// that is not running is a no-op. The cached Admin connection is closed.
func (i *Instance) Stop(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	return i.stop(ctx)
}

func (i *Instance) stop(ctx context.Context) error {
	i.closeAdmin()
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	// A stopped (SIGSTOP) server would never see SIGTERM.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("mysqld: %s: SIGTERM: %w", i.opts.Name, err)
	}
	timer := time.NewTimer(i.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		i.log.Info().Msg("mariadbd stopped")
		return nil
	case <-ctx.Done():
	case <-timer.C:
	}
	i.log.Warn().Msg("mariadbd did not stop in time, killing it")
	i.killProc(p)
	return nil
}

// Kill sends SIGKILL and waits until the process is gone. Kill on a server
// that is not running is a no-op. The cached Admin connection is closed.
func (i *Instance) Kill() error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	i.closeAdmin()
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil {
		return nil
	}
	i.killProc(p)
	i.log.Info().Msg("mariadbd killed")
	return nil
}

func (i *Instance) killProc(p *process) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the server process (SIGSTOP and SIGCONT for pause
// tests).
func (i *Instance) Signal(sig os.Signal) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return fmt.Errorf("%w: %s", ErrNotRunning, i.opts.Name)
	}
	if err := i.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("mysqld: %s: signal %v: %w", i.opts.Name, sig, err)
	}
	return nil
}

// DSN returns a go-sql-driver DSN for user over TCP, with database db (may be
// empty).
func (i *Instance) DSN(user, pass, db string) string {
	return i.tcpConfig(user, pass, db).FormatDSN()
}

// Admin returns a root connection pool over TCP. It is cached until the next
// Stop or Kill, which close it; callers must not close it themselves.
func (i *Instance) Admin(ctx context.Context) (*sql.DB, error) {
	cfg := i.tcpConfig("root", i.RootPassword(), "")
	i.mu.Lock()
	if i.admin != nil {
		db := i.admin
		i.mu.Unlock()
		return db, nil
	}
	if !i.runningLocked() {
		i.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, i.opts.Name)
	}
	db, err := i.openDB(cfg)
	if err != nil {
		i.mu.Unlock()
		return nil, err
	}
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	i.admin = db
	i.mu.Unlock()
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("mysqld: %s: admin connection: %w", i.opts.Name, err)
	}
	return db, nil
}

func (i *Instance) closeAdmin() {
	i.mu.Lock()
	db := i.admin
	i.admin = nil
	i.mu.Unlock()
	if db != nil {
		_ = db.Close()
	}
}

// tcpConfig is the driver configuration for user over TCP.
func (i *Instance) tcpConfig(user, pass, db string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = pass
	cfg.Net = "tcp"
	cfg.Addr = i.Addr()
	cfg.DBName = db
	cfg.Timeout = 3 * time.Second
	cfg.ParseTime = true
	return cfg
}

// openDB opens a pool whose driver complaints go to the logger at debug
// level instead of to stderr.
func (i *Instance) openDB(cfg *mysql.Config) (*sql.DB, error) {
	cfg.Logger = driverLogger{i}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqld: %s: %w", i.opts.Name, err)
	}
	return sql.OpenDB(c), nil
}

type driverLogger struct{ i *Instance }

func (l driverLogger) Print(v ...any) {
	l.i.log.Debug().Str("driver", strings.TrimSpace(fmt.Sprint(v...))).Msg("mysql driver")
}

// maxLogRead bounds how much of the error log readFrom returns.
const maxLogRead = 64 << 10

// readFrom returns the contents of path from offset on, at most the last
// maxLogRead bytes of them. An offset past the end (a truncated log) reads
// from the start. It returns "" when the file cannot be read.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	size := st.Size()
	if offset > size {
		offset = 0
	}
	offset = max(offset, size-maxLogRead)
	b := make([]byte, size-offset)
	n, err := f.ReadAt(b, offset)
	if err != nil && n == 0 {
		return ""
	}
	return string(b[:n])
}
