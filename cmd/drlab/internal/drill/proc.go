package drill

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// mysqldProc is a lab mysqld as the operating system shows it: enough to
// signal it and, after a kill, to start it again the way it was started —
// what a process supervisor would do. It boots read-only and in the replica
// role (the lab's command line says so), so a restarted master truncates
// what it never had acknowledged and waits for the HA agent to rejoin it.
type mysqldProc struct {
	name string
	pid  int
	argv []string
	dir  string
	log  string
}

// findMysqld reads the instance's pid file and the process's command line.
func findMysqld(labDir, name string) (*mysqldProc, error) {
	base := filepath.Join(labDir, "mysql", name)
	data, err := os.ReadFile(filepath.Join(base, "mysqld.pid"))
	if err != nil {
		return nil, fmt.Errorf("drill: %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return nil, fmt.Errorf("drill: %s: bad pid file %q", name, data)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("drill: %s (pid %d) is not running: %w", name, pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) == 0 || !strings.Contains(filepath.Base(argv[0]), "mariadbd") && !strings.Contains(filepath.Base(argv[0]), "mysqld") {
		return nil, fmt.Errorf("drill: pid %d of %s is %q, not a mysqld", pid, name, argv)
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		cwd = base
	}
	return &mysqldProc{name: name, pid: pid, argv: argv, dir: cwd, log: filepath.Join(base, "error.log")}, nil
}

func (p *mysqldProc) signal(sig syscall.Signal) error {
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("drill: signal %s to %s (pid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// gone reports whether the process has exited (a zombie counts as gone).
func (p *mysqldProc) gone() bool {
	if syscall.Kill(p.pid, 0) != nil {
		return true
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] == 'Z'
}

// stopped reports whether the process is stopped (SIGSTOP). A stopped
// process leaves that state only by SIGCONT or by being killed.
func (p *mysqldProc) stopped() bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && (data[i+2] == 'T' || data[i+2] == 't')
}

// restart starts the instance again with its original command line, in a
// process group of its own (the lab's, not the drill's, to stop), and
// returns its new pid.
func (p *mysqldProc) restart() (int, error) {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("drill: restart %s: %w", p.name, err)
	}
	// Reaped here while the drill runs; the lab stops it by its pid file.
	go func() { _ = cmd.Wait() }()
	p.pid = cmd.Process.Pid
	return p.pid, nil
}
