package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// killHook writes a fence hook for the test bed: it kills the named
// instance's mariadbd with SIGKILL (which also ends a stopped process), as a
// host's fencing agent would, and fails for an unknown name.
func killHook(t *testing.T, e *hatest.Env) []string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\ncase \"$1\" in\n")
	for _, in := range e.Instances() {
		fmt.Fprintf(&b, "%s) pidfile=%q ;;\n", in.Name(), filepath.Join(in.Dir(), "mysqld.pid"))
	}
	b.WriteString("*) echo \"unknown instance $1\" >&2; exit 2 ;;\nesac\n")
	// A pid file left by a process already gone names nothing to kill.
	b.WriteString("pid=$(cat \"$pidfile\" 2>/dev/null) || exit 0\nkill -KILL \"$pid\" 2>/dev/null || true\n")
	path := filepath.Join(t.TempDir(), "fence.sh")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o700))
	return []string{path, "{old_master}"}
}

// TestPausedMasterNeverTwoWritable: the master is paused (SIGSTOP) under
// continuous writes, past detection; the agent fences it out of band (the
// fence hook) before it promotes another instance, and the test then lets
// the old process go on (SIGCONT). A sampler reading read_only on every
// instance as the app user, every 10 ms through the whole run, never sees
// two writable instances; no acknowledged write is lost; the old master,
// started again read-only as a supervisor would, rejoins as a replica.
//
// Without the fence hook the resumed master answered read_only=0 beside the
// new master for about 130 ms in this test (15 samples): the agent fences
// it only once it reaches it again, and read_only=1 then waits for the
// commits that were waiting for a semi-sync ack.
func TestPausedMasterNeverTwoWritable(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	cfg := testConfig(e, "agent-1")
	cfg.Hooks.Fence = [][]string{killHook(t, e)}
	leader(t, startAgent(t, e, cfg, nil))
	w := e.StartWriter()
	s := e.StartSampler()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 50, "acknowledged writes") })

	old := e.DB.Master
	require.NoError(t, old.Signal(syscall.SIGSTOP))
	paused := time.Now()
	rec := masterChanged(t, e, old.Name(), 20*time.Second)
	var firstOK time.Time
	check.For(t, 20*time.Second, check.Every, func() error {
		firstOK = w.FirstOKAfter(paused)
		return check.That(!firstOK.IsZero(), "a write acknowledged by the new master")
	})
	t.Logf("SIGSTOP → first acknowledged write on %s: %s", rec.Instance, firstOK.Sub(paused))
	// The old process was fenced before the promotion: SIGCONT finds it
	// gone (a late fence would leave it running, and writable on resume).
	_ = old.Signal(syscall.SIGCONT)
	check.For(t, 5*time.Second, check.Every, func() error { return check.That(!old.Running(), "the fenced master's process gone") })
	// More writes on the new master while the sampler keeps watching.
	base := w.Acked()
	check.For(t, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= base+50, "more writes") })

	var fr state.FailoverRecord
	check.For(t, 10*time.Second, check.Every, func() error {
		recs := failovers(t, e)
		if len(recs) == 0 || !recs[len(recs)-1].Done() {
			return check.That(false, "the failover recorded")
		}
		fr = recs[len(recs)-1]
		return nil
	})
	assert.Equal(t, state.OutcomeSucceeded, fr.Outcome)
	hook, promote := -1, -1
	for i, st := range fr.Steps {
		switch st.Name {
		case "fence_hook":
			hook = i
			assert.Empty(t, st.Error)
		case "promote":
			promote = i
		}
	}
	require.GreaterOrEqual(t, hook, 0, "no fence_hook step in %+v", fr.Steps)
	assert.Less(t, hook, promote, "fenced after the promotion")

	// A supervisor starts the old master again: read-only, its un-acked
	// tail truncated, it rejoins.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, old.Start(ctx))
	check.For(t, 20*time.Second, check.Every, func() error { return check.That(replicatesFrom(e, old, rec.Addr), "the old master rejoined") })

	acked, failed := w.Stop()
	samples, violations := s.Stop()
	assert.Empty(t, violations, "two writable instances")
	missing, err := e.MissingAcked(rec.Addr, acked)
	require.NoError(t, err)
	assert.Empty(t, missing, "acknowledged writes lost")
	t.Logf("%d acknowledged, %d failed attempts, %d samples, %d with two writable; record RTO %s",
		len(acked), failed, samples, len(violations), time.Duration(fr.RTO))
}
