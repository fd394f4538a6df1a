package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fence is the lab's fencing agent, what the HA agents' fence hook runs
// (drlab fence): it kills the lab mysqld named name with SIGKILL, which
// also ends a stopped (SIGSTOP) process, and waits up to wait until it is
// gone (with wait 0 it returns once the signal is delivered). An
// instance that is not running is already fenced. The pid file's process
// must be that instance's mariadbd (its --datadir under the lab's
// directory): a pid file left by a dead process may name another process.
func Fence(dir, name string, wait time.Duration) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("lab: fence: bad instance name %q", name)
	}
	base := filepath.Join(dir, "mysql", name)
	data, err := os.ReadFile(filepath.Join(base, "mysqld.pid"))
	if err != nil {
		if os.IsNotExist(err) {
			if _, serr := os.Stat(base); serr != nil {
				return "", fmt.Errorf("lab: fence: no instance %q in %s", name, dir)
			}
			return name + " not running", nil
		}
		return "", fmt.Errorf("lab: fence: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return "", fmt.Errorf("lab: fence: %s: bad pid file %q", name, data)
	}
	if !alive(pid) || !isInstance(pid, base) {
		return fmt.Sprintf("%s not running (pid file names %d)", name, pid), nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && alive(pid) {
		return "", fmt.Errorf("lab: fence: kill %s (pid %d): %w", name, pid, err)
	}
	if wait <= 0 {
		// Once SIGKILL is delivered no thread of the process returns to
		// user space: it answers nothing more, even before it has exited.
		return fmt.Sprintf("%s killed (pid %d)", name, pid), nil
	}
	deadline := time.Now().Add(wait)
	for alive(pid) {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("lab: fence: %s (pid %d) still alive %s after SIGKILL", name, pid, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Sprintf("%s killed (pid %d)", name, pid), nil
}

// isInstance reports whether pid is a mariadbd whose data directory lies
// under base.
func isInstance(pid int, base string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) == 0 || !strings.Contains(filepath.Base(argv[0]), "mysqld") && !strings.Contains(filepath.Base(argv[0]), "mariadbd") {
		return false
	}
	for _, a := range argv[1:] {
		if d, ok := strings.CutPrefix(a, "--datadir="); ok {
			return d == base || strings.HasPrefix(d, base+string(filepath.Separator))
		}
	}
	return false
}
