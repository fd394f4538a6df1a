package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// TestPausedMastersComeBack: three times on one 3-instance cluster under
// writes, the master is paused past detection, failed over, and resumed
// with a write in flight. Each time the deposed master comes back as a
// healthy replica of the new master by itself — its never-acknowledged
// transactions saved to a file and undone — so the next pause still has a
// candidate to fail over to; every acknowledged write survives and no
// instance is quarantined.
func TestPausedMastersComeBack(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	leader(t, startAgent(t, e, testConfig(e, "agent-1"), nil))
	logFailovers(t, e)
	w := e.StartWriter()
	ctx := context.Background()
	rewound := 0
	for round := 1; round <= 3; round++ {
		check.For(t, 10*time.Second, check.Every, func() error {
			return check.That(w.Acked() >= 20*round, "acknowledged writes before round %d", round)
		})
		cur, _ := e.Master()
		old := e.Instance(cur.Instance)
		conn, err := e.AppDB(old.Addr(), 30*time.Second).Conn(ctx)
		require.NoError(t, err)
		require.NoError(t, old.Signal(syscall.SIGSTOP))
		rec := masterChanged(t, e, old.Name(), 20*time.Second)
		check.For(t, 20*time.Second, check.Every, func() error {
			recs := failovers(t, e)
			return check.That(len(recs) == round && recs[round-1].Done(), "failover %d finished", round)
		})
		// A write sent while it is paused: it commits locally on resume
		// and waits for an ack that never comes.
		inflight := make(chan error, 1)
		go func() {
			_, err := conn.ExecContext(ctx, "INSERT INTO "+hatest.Table+" (id) VALUES (?)", 1000000+round)
			inflight <- err
		}()
		require.NoError(t, old.Signal(syscall.SIGCONT))
		select {
		case err := <-inflight:
			require.Error(t, err, "round %d: the deposed master acknowledged an in-flight write", round)
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the in-flight write neither failed nor succeeded", round)
		}
		_ = conn.Close()
		took := check.For(t, 30*time.Second, check.Every, func() error {
			return healthy(t, e, rec)
		})
		t.Logf("round %d: %s paused, %s promoted; %s after SIGCONT all 3 instances replicate from it (pause → new master %s)",
			round, old.Name(), rec.Instance, took.Round(10*time.Millisecond), time.Duration(failovers(t, e)[round-1].RTO))
		r, err := e.Store.Repair(ctx, hatest.DC, hatest.Cluster, old.Name())
		switch {
		case errors.Is(err, state.ErrNotFound):
			t.Logf("round %d: %s came back with nothing errant and rejoined", round, old.Name())
		case err != nil:
			t.Fatal(err)
		default:
			if r.FailoverID != failovers(t, e)[round-1].ID {
				t.Logf("round %d: %s came back with nothing errant and rejoined", round, old.Name())
				break
			}
			require.Equal(t, state.RepairRejoined, r.State, "round %d: %+v", round, r)
			images, err := os.ReadFile(r.Images)
			require.NoError(t, err, "round %d: the row images", round)
			assert.Contains(t, string(images), r.Errant)
			rewound++
			t.Logf("round %d: %s rewound %s (%d transactions), images in %s", round, old.Name(), r.Errant, r.Transactions, r.Images)
		}
	}
	assert.Positive(t, rewound, "no round had a deposed master with errant transactions to rewind")
	acked, _ := w.Stop()
	cur, _ := e.Master()
	for _, in := range e.Instances() {
		check.For(t, 20*time.Second, check.Every, func() error {
			missing, err := e.MissingAcked(in.Addr(), acked)
			if err != nil {
				return err
			}
			return check.That(len(missing) == 0, "%s lacks %d acknowledged writes (master %s)", in.Name(), len(missing), cur.Instance)
		})
	}
	resp, err := e.Cli.Get(ctx, e.Store.Prefix("quarantine"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	assert.Zero(t, resp.Count, "quarantined instances")
}

// healthy reports whether every instance other than the master record's
// replicates from it and no instance is writable but the master.
func healthy(t *testing.T, e *hatest.Env, rec state.MasterRecord) error {
	for _, in := range e.Instances() {
		if in.Name() == rec.Instance {
			continue
		}
		if !replicatesFrom(e, in, rec.Addr) {
			return fmt.Errorf("%s does not replicate from %s", in.Name(), rec.Instance)
		}
		ro, err := readOnly(in)
		if err != nil {
			return err
		}
		if !ro {
			return fmt.Errorf("%s is writable", in.Name())
		}
	}
	return nil
}
