package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drillReport is the part of `drlab drill -o json` the test reads.
type drillReport struct {
	Passed bool `json:"passed"`
	Writes struct {
		Attempted int `json:"attempted"`
		Acked     int `json:"acked"`
		Named     int `json:"named"`
	} `json:"writes"`
	Events []struct {
		Step      string `json:"step"`
		Available bool   `json:"available"`
		Target    string `json:"target"`
		Error     string `json:"error"`
		Outage    struct {
			Recovered bool  `json:"recovered"`
			RTO       int64 `json:"rto"`
		} `json:"outage"`
		LostWrites int `json:"lost_writes"`
		Record     *struct {
			Outcome string `json:"outcome"`
		} `json:"record"`
	} `json:"events"`
	Checks []drillCheck `json:"checks"`
}

type drillCheck struct {
	Name    string `json:"name"`
	After   string `json:"after"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail"`
}

// drillSteps are the steps of the short drill: one in each of the lab's
// three DCs.
const drillSteps = "kill,switchover,pause"

// TestDrillShort runs the short DR drill on a fresh lab, as make demo does:
// kill -9 of a master, a switchover and a paused master, each in another
// DC, under SDK writes to every shard, and requires every check to pass,
// full redundancy after each step included.
//
// Why it cannot flake on a loaded machine: the lab's etcd runs inside
// drlab, sharing the cores with every lab process; the services' default
// election (5 s TTL, 2 s fence_before) left an agent 1 s to reach it, and
// on a starved machine agents self-fenced their masters over and over,
// so the switchover was refused (NoWritableMaster) or interrupted (lost
// leadership). The lab now runs its agents on a 10 s/4 s election, and the
// drill retries a switchover the agent refused for the cluster's health or
// abandoned on losing its leadership (an operator's answer too), once the
// cluster is fully redundant again. Every wait polls up to a bound.
func TestDrillShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole lab and runs the drill")
	}
	r, dir, runErr := runDrill(t, "--steps", drillSteps)

	// The report is also in the lab directory.
	saved, err := os.ReadFile(filepath.Join(dir, "drill-report.json"))
	require.NoError(t, err)
	var again drillReport
	require.NoError(t, json.Unmarshal(saved, &again))
	require.Equal(t, r.Passed, again.Passed)

	steps := strings.Split(drillSteps, ",")
	require.Len(t, r.Events, len(steps))
	targets := map[string]bool{}
	for i, step := range steps {
		e := r.Events[i]
		require.Equal(t, step, e.Step)
		require.True(t, e.Available, step)
		assert.Empty(t, e.Error, step)
		assert.True(t, e.Outage.Recovered, "%s: writes never recovered", step)
		assert.Positive(t, e.Outage.RTO, step)
		assert.Zero(t, e.LostWrites, step)
		if assert.NotNil(t, e.Record, "%s: no failover record", step) {
			assert.Equal(t, "SUCCEEDED", e.Record.Outcome, step)
		}
		targets[e.Target[:5]] = true
	}
	assert.Len(t, targets, len(steps), "each step acts on another DC")
	require.Positive(t, r.Writes.Acked)
	// Acknowledged writes carry their GTID (the system's request id); only
	// a connection lost right after the commit leaves one unnamed.
	require.GreaterOrEqual(t, r.Writes.Named, r.Writes.Acked*9/10, "acknowledged writes with a GTID")
	failed := 0
	for _, c := range r.Checks {
		if !assert.Equal(t, "PASS", c.Outcome, "%s (after %s): %s", c.Name, c.After, c.Detail) {
			failed++
		}
	}
	require.Zero(t, failed, "the drill reported a failed check")
	require.True(t, r.Passed)
	require.NoError(t, runErr, "drlab drill passed but exited non-zero")
}

// TestDrillBreak runs the drill with a deliberate fault after its step (a
// replica made writable beside its master for a second, as a build that
// promotes without fencing would): the drill must fail, exit 1, and name the
// violation.
func TestDrillBreak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole lab and runs the drill")
	}
	r, _, err := runDrill(t, "--steps", "switchover", "--break", "writable-replica")
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee) && ee.ExitCode() == 1, "a failed check must make drlab drill exit 1: %v", err)
	require.False(t, r.Passed)
	require.Len(t, r.Events, 1)
	// The break follows the step whatever became of it (a loaded machine
	// can make the HA agent refuse the switchover): only what the checks
	// say of the break matters here.
	require.NotContains(t, r.Events[0].Error, "break "+"writable-replica", "the break itself failed")
	require.GreaterOrEqual(t, len(r.Events[0].Target), 5, "the step found no master: %s", r.Events[0].Error)
	dc := r.Events[0].Target[:5]
	var two *drillCheck
	for i, c := range r.Checks {
		if c.Name == "never two writable instances of a cluster" {
			two = &r.Checks[i]
		}
	}
	require.NotNil(t, two, "no two-writable check in the report")
	require.Equal(t, "FAIL", two.Outcome)
	require.Contains(t, two.Detail, dc+"/main at ", "the violation names the cluster")
	require.Contains(t, two.Detail, "writable "+dc+"-db", "the violation names the writable instances")
}

// runDrill runs drlab drill on a fresh lab with args and returns its report,
// the lab directory and the command's error (an *exec.ExitError when it
// exited non-zero).
func runDrill(t *testing.T, args ...string) (drillReport, string, error) {
	t.Helper()
	bin := bins(t)
	dir := filepath.Join(t.TempDir(), "lab")
	cmd := exec.Command(filepath.Join(bin, "drlab"), append([]string{"drill", "--fresh", "--dir", dir, "-o", "json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	t.Cleanup(func() { _ = exec.Command(filepath.Join(bin, "drlab"), "down", "--dir", dir).Run() })
	keepLogsOnFailure(t, dir) // runs before the cleanup above: drlab down removes the directory
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("drlab drill: %v\n%s", err, errb.String())
	}
	t.Logf("drlab drill:\n%s", errb.String())
	var r drillReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), "report: %s\nstderr: %s", out.String(), errb.String())
	return r, dir, err
}

// keepLogsOnFailure copies, when t fails and $DRPLANE_ARTIFACTS is set, the
// lab's service logs, the mysqld error logs and the drill report out of the
// test's temporary directory (removed after the test) into
// $DRPLANE_ARTIFACTS/<test>-<time>, so a failed drill can be read
// afterwards. Configuration files and lab.json (passwords, tokens) are not
// copied. drill --fresh has stopped the lab by then; registered after the
// lab's cleanup, it runs before drlab down removes the directory.
func keepLogsOnFailure(t *testing.T, dir string) {
	t.Cleanup(func() {
		root := os.Getenv("DRPLANE_ARTIFACTS")
		if !t.Failed() || root == "" {
			return
		}
		dst := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().UTC().Format("20060102T150405Z"))
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			name := d.Name()
			if !strings.HasPrefix(rel, "logs"+string(filepath.Separator)) && name != "error.log" && name != "drill-report.json" {
				return nil
			}
			return copyFile(filepath.Join(dst, rel), path)
		})
		if err != nil {
			t.Logf("keeping the lab's logs: %v", err)
			return
		}
		t.Logf("the lab's logs are kept in %s", dst)
	})
}

// copyFile streams src to dst, creating dst's directory (a lab's logs can
// be large: they are not read into memory).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
