package repl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/freeport"
)

// bins returns a directory holding the reship, collector, coordinator and
// drctl binaries: $DRPLANE_BIN when set (make test builds them first),
// otherwise a fresh go build into a temporary directory.
func bins(t testing.TB) string {
	t.Helper()
	names := map[string]string{
		"reship":      "github.com/drplane/drplane/services/reship/cmd/reship",
		"collector":   "github.com/drplane/drplane/services/collector/cmd/collector",
		"coordinator": "github.com/drplane/drplane/services/coordinator/cmd/coordinator",
		"haagent":     "github.com/drplane/drplane/services/haagent/cmd/haagent",
		"drctl":       "github.com/drplane/drplane/cmd/drctl",
	}
	dir := os.Getenv("DRPLANE_BIN")
	if dir == "" {
		dir = t.TempDir()
		for name, pkg := range names {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go build %s: %v\n%s", pkg, err, out)
			}
		}
	}
	for name := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("binary %s missing in %s (run make build): %v", name, dir, err)
		}
	}
	return dir
}

// service is one reship or collector process of a DC, started from its
// binary with a generated configuration file.
type service struct {
	t       testing.TB
	name    string // reship or collector
	dc      string
	bin     string
	dir     string
	cfg     map[string]any
	logPath string
	starts  int

	cmd    *exec.Cmd
	done   chan struct{}
	health string
}

// newService prepares the DC's service name with its base configuration;
// start runs it.
func (b *bed) newService(d *dc, name string) *service {
	cfg := map[string]any{
		"dc": d.name, "id": name + "-" + d.name,
		"etcd":     map[string]any{"endpoints": b.etcd.Endpoints()},
		"log":      map[string]any{"level": "info", "format": "json"},
		"nats_url": b.mesh.URL(d.name),
	}
	switch name {
	case "reship":
		cfg["mysql"] = map[string]any{"cluster": clusterName, "user": d.users.ReplUser, "password": d.users.ReplPassword}
		cfg["start"] = "current"
	case "collector":
		cfg["mysql"] = map[string]any{"cluster": clusterName, "database": database, "user": d.db.AppUser, "password": d.db.AppPassword}
	}
	dir := b.t.TempDir()
	// DRPLANE_TEST_LOGS keeps the services' logs (at debug level) in that
	// directory after the test.
	if keep := os.Getenv("DRPLANE_TEST_LOGS"); keep != "" {
		dir = filepath.Join(keep, d.name+"-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.t.Fatalf("log dir: %v", err)
		}
		cfg["log"] = map[string]any{"level": "debug", "format": "json"}
	}
	s := &service{t: b.t, name: name, dc: d.name, bin: filepath.Join(b.bin, name), dir: dir, cfg: cfg,
		logPath: filepath.Join(dir, name+".log")}
	b.t.Cleanup(func() {
		s.stop()
		if b.t.Failed() {
			b.t.Logf("last lines of %s/%s's log:\n%s", s.dc, s.name, tailFile(s.logPath, 40))
		}
	})
	return s
}

// setDuplicateDelivery sets the collector's test.duplicate_delivery hook
// for the next start.
func (s *service) setDuplicateDelivery(on bool) { s.setTestHook("duplicate_delivery", on) }

// setHoldBatchAfter sets the collector's test.hold_batch_after hook for the
// next start (0: off).
func (s *service) setHoldBatchAfter(n int) { s.setTestHook("hold_batch_after", n) }

func (s *service) setTestHook(key string, v any) {
	hooks, _ := s.cfg["test"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
		s.cfg["test"] = hooks
	}
	hooks[key] = v
}

// loggedSinceStart reports whether the log of the current run holds msg.
func (s *service) loggedSinceStart(msg string) bool {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return false
	}
	text := string(data)
	if i := strings.LastIndex(text, fmt.Sprintf("---- start %d ----", s.starts)); i >= 0 {
		text = text[i:]
	}
	return strings.Contains(text, msg)
}

// start writes the configuration (0600; it holds passwords) and runs the
// binary; it waits until /readyz answers 200.
func (s *service) start() {
	t := s.t
	t.Helper()
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatalf("port: %v", err)
	}
	s.health = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.cfg["health_addr"] = s.health
	// JSON is YAML: the services read it as their YAML configuration.
	data, err := json.MarshalIndent(s.cfg, "", "  ")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfgPath := filepath.Join(s.dir, s.name+".yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatalf("config: %v", err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	s.starts++
	_, _ = fmt.Fprintf(logf, "---- start %d ----\n", s.starts)
	cmd := exec.Command(s.bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The kernel kills the service if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.waitReady()
}

// waitReady polls /readyz until it answers 200, failing the test when the
// process exits or the deadline passes.
func (s *service) waitReady() {
	t := s.t
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(waitReady)
	last := ""
	for {
		select {
		case <-s.done:
			t.Fatalf("%s/%s exited: %v\n%s", s.dc, s.name, s.cmd.ProcessState, tailFile(s.logPath, 40))
		default:
		}
		resp, err := client.Get("http://" + s.health + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = strings.TrimSpace(string(body))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s not ready after %s: %s\n%s", s.dc, s.name, waitReady, last, tailFile(s.logPath, 40))
		}
		time.Sleep(pollEvery)
	}
}

// running reports whether the process runs.
func (s *service) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to end.
func (s *service) kill() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop sends SIGTERM and waits up to 20 s, then kills.
func (s *service) stop() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.t.Logf("%s/%s did not stop on SIGTERM; killing it", s.dc, s.name)
		s.kill()
	}
}

// restart stops the process and starts it again with its configuration.
func (s *service) restart() {
	s.stop()
	s.start()
}

// metric sums the samples of a counter or gauge on /metrics whose labels
// include every name="value" pair of labels.
func (s *service) metric(ctx context.Context, name string, labels ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.health+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	total, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%w: %s%v", errNoMetric, name, labels)
	}
	return total, nil
}

// errNoMetric means /metrics has no matching sample.
var errNoMetric = errors.New("repl test: no such metric")

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startServices starts reship and collector in every DC, all reships first
// (a collector's inbound stream sources the other DCs' outbound streams,
// which their reships create).
func (b *bed) startServices() {
	b.t.Helper()
	began := time.Now()
	for _, name := range dcNames() {
		d := b.dcs[name]
		if d.reship == nil {
			d.reship = b.newService(d, "reship")
			d.collector = b.newService(d, "collector")
		}
		d.reship.start()
	}
	for _, name := range dcNames() {
		b.dcs[name].collector.start()
	}
	b.t.Logf("services: reship and collector ready in 3 DCs in %s", time.Since(began).Round(time.Millisecond))
}
