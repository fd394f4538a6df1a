package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one service process the lab started.
type proc struct {
	dc, name   string
	healthAddr string
	cmd        *exec.Cmd
	done       chan struct{}
	logPath    string
	// bin, args and pidPath start it again (respawn).
	bin     string
	args    []string
	pidPath string
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone; false when it
// had already exited.
func (p *proc) kill() bool {
	if !p.running() {
		return false
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return true
}

// respawn starts the process again as it was started, as a new proc.
func (p *proc) respawn() (*proc, error) {
	cmd, done, err := spawn(p.bin, p.args, nil, p.logPath, p.pidPath)
	if err != nil {
		return nil, err
	}
	np := *p
	np.cmd, np.done = cmd, done
	return &np, nil
}

func (p *proc) label() string { return p.dc + "/" + p.name }

// spawn starts bin with args, its output in logPath, in its own process
// group so that a Ctrl-C at the terminal reaches only drlab, which stops
// the lab in order.
func spawn(bin string, args, env []string, logPath, pidPath string) (*exec.Cmd, chan struct{}, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	_ = os.WriteFile(pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	return cmd, done, nil
}

// stop sends SIGTERM and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) (clean bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState != nil && p.cmd.ProcessState.ExitCode() == 0
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// waitReady polls the process's /readyz until it answers 200, the process
// exits, or ctx ends.
func (p *proc) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + p.healthAddr + "/readyz"
	var last string
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting: %s", p.label(), tailFile(p.logPath, 5))
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = strings.TrimSpace(string(body[:n]))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %s (log %s)", p.label(), last, p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, " | ")
}

// killPidFiles signals every process named by a *.pid file under dir (and
// its subdirectories one level down), waits for them to go, and returns
// what it stopped.
func killPidFiles(dir string, grace time.Duration) ([]string, error) {
	var files []string
	for _, pat := range []string{"run/*.pid", "mysql/*/mysqld.pid"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	var stopped []string
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if !alive(pid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if alive(pid) {
			errs = append(errs, fmt.Errorf("pid %d (%s) survived SIGKILL", pid, f))
			continue
		}
		rel, _ := filepath.Rel(dir, f)
		stopped = append(stopped, fmt.Sprintf("%s (pid %d)", rel, pid))
	}
	return stopped, errors.Join(errs...)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(data), ')'); i > 0 && i+2 < len(data) {
		return data[i+2] != 'Z'
	}
	return true
}
