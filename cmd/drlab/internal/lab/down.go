package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/drplane/drplane/pkg/labfile"
)

// Down stops whatever a lab left running in dir (the drlab process first,
// which stops its own children, then any service or mysqld still alive by
// their pid files) and removes the directory. It returns what it stopped.
func Down(dir string, out io.Writer) ([]string, error) {
	var stopped []string
	if f, err := labfile.Read(filepath.Join(dir, labfile.FileName)); err == nil {
		if pid := f.Drlab.Pid; pid > 1 && pid != os.Getpid() && alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(45 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			stopped = append(stopped, fmt.Sprintf("drlab (pid %d)", pid))
		}
	}
	more, err := killPidFiles(dir, 10*time.Second)
	stopped = append(stopped, more...)
	if err != nil {
		return stopped, err
	}
	for _, s := range stopped {
		fmt.Fprintf(out, "stopped %s\n", s)
	}
	if err := os.RemoveAll(dir); err != nil {
		return stopped, fmt.Errorf("remove %s: %w", dir, err)
	}
	fmt.Fprintf(out, "removed %s\n", dir)
	return stopped, nil
}
