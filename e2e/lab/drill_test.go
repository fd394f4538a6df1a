package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drillReport is the part of `drlab drill -o json` the test reads.
type drillReport struct {
	Passed bool `json:"passed"`
	Writes struct {
		Attempted int `json:"attempted"`
		Acked     int `json:"acked"`
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
	Checks []struct {
		Name    string `json:"name"`
		After   string `json:"after"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
	} `json:"checks"`
}

// TestDrillShort runs the short DR drill on a fresh lab, as make demo does:
// kill -9 of a master, a switchover and a paused master, each in another
// DC, under SDK writes to every shard, and requires every check to pass.
func TestDrillShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole lab and runs the drill")
	}
	bin := bins(t)
	dir := filepath.Join(t.TempDir(), "lab")
	cmd := exec.Command(filepath.Join(bin, "drlab"), "drill", "--fresh", "--dir", dir, "--steps", "kill,switchover,pause", "-o", "json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	t.Cleanup(func() { _ = exec.Command(filepath.Join(bin, "drlab"), "down", "--dir", dir).Run() })
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("drlab drill: %v\n%s", err, errb.String())
	}
	t.Logf("drlab drill:\n%s", errb.String())
	var r drillReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), "report: %s\nstderr: %s", out.String(), errb.String())

	// The report is also in the lab directory.
	saved, err := os.ReadFile(filepath.Join(dir, "drill-report.json"))
	require.NoError(t, err)
	var again drillReport
	require.NoError(t, json.Unmarshal(saved, &again))
	require.Equal(t, r.Passed, again.Passed)

	require.Len(t, r.Events, 3)
	targets := map[string]bool{}
	for i, step := range []string{"kill", "switchover", "pause"} {
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
	assert.Len(t, targets, 3, "each step acts on another DC")
	require.Positive(t, r.Writes.Acked)
	for _, c := range r.Checks {
		assert.Equal(t, "PASS", c.Outcome, "%s (after %s): %s", c.Name, c.After, c.Detail)
	}
	require.True(t, r.Passed, "the drill reported a failed check")
	require.NoError(t, err, "drlab drill exited non-zero")
}
