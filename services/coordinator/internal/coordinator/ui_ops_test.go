package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/control"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

// barrierDesk stands in for the collectors of a handoff: it passes each
// barrier the leader asks for to the test, which answers it when it wants
// the wave to go on (with a GTID of the old owner, applied at once in every
// other DC). Until then the wave waits, frozen.
type barrierDesk struct {
	st    *state.Store
	asked chan askedBarrier
	mu    sync.Mutex
	seq   int
}

// askedBarrier is one barrier as the leader stored it.
type askedBarrier struct {
	key string
	rev int64
	b   state.Barrier
}

// holdBarriers starts a barrierDesk watching st from now on.
func holdBarriers(t *testing.T, st *state.Store) *barrierDesk {
	t.Helper()
	d := &barrierDesk{st: st, asked: make(chan askedBarrier, 16)}
	// Watch from the current revision, so no barrier written while the
	// watch is set up is missed.
	now, err := st.Client().Get(t.Context(), st.Prefix("barriers"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events := st.Client().Watch(ctx, st.Prefix("barriers"), clientv3.WithPrefix(), clientv3.WithRev(now.Header.Revision+1))
	go func() {
		for wr := range events {
			for _, ev := range wr.Events {
				var b state.Barrier
				if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &b) != nil || b.GTID != "" || b.Error != "" {
					continue
				}
				select {
				case d.asked <- askedBarrier{key: string(ev.Kv.Key), rev: ev.Kv.ModRevision, b: b}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return d
}

// next is the next barrier the leader asks for.
func (d *barrierDesk) next(t *testing.T) askedBarrier {
	t.Helper()
	select {
	case a := <-d.asked:
		return a
	case <-time.After(callTimeout):
		t.Fatalf("the leader asked for no barrier within %s", callTimeout)
		return askedBarrier{}
	}
}

// answer marks the barrier, after every other DC applied it.
func (d *barrierDesk) answer(t *testing.T, a askedBarrier) {
	t.Helper()
	d.mu.Lock()
	d.seq += 10
	gtid := fmt.Sprintf("1-100-%d", d.seq)
	d.mu.Unlock()
	ctx := t.Context()
	topo, _, err := d.st.Topology(ctx)
	require.NoError(t, err)
	for _, dc := range topo.DCs {
		if dc.Name == a.b.DC {
			continue
		}
		for _, sh := range a.b.Shards {
			wm := state.Watermark{DC: dc.Name, Origin: a.b.DC, Keyspace: a.b.Keyspace, Shard: sh, GTID: gtid, AppliedAt: time.Now().UTC()}
			_, err := state.Put(ctx, d.st, d.st.WatermarkKey(dc.Name, a.b.DC, a.b.Keyspace, sh), wm, state.PutOptions{PrevRev: -1})
			require.NoError(t, err)
		}
	}
	b := a.b
	b.GTID, b.MarkedAt, b.MarkedBy = gtid, time.Now().UTC(), "test"
	_, err = state.Put(ctx, d.st, a.key, b, state.PutOptions{PrevRev: a.rev})
	require.NoError(t, err, "the barrier is still waiting for its answer")
}

// TestDashboardCancelResume: an operator cancels a running evacuation
// from the operations view while its first wave waits for its barrier —
// asked first, with a reason for the audit log — sees it canceling, then
// canceled after that wave with its shards moved, resumes it, and sees it
// finish. The waves go on only when the test answers their barriers, so
// every state is on the page for as long as the test looks.
func TestDashboardCancelResume(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	desk := holdBarriers(t, st)
	// A barrier waits far longer than the test takes to answer it.
	c, _ := startDashboardWith(t, st, "127.0.0.1:0", coordinator.HandoffOptions{RouterGrace: 100 * time.Millisecond, CatchUp: 2 * time.Minute})

	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	op.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.ID("dcop-form")))
	code, out := c.rest(t, http.MethodPost, "/v1/dcs/dc-a1:evacuate", adminToken, `{"parallel":16,"reason":"maintenance"}`)
	require.Equal(t, http.StatusOK, code, string(out))
	var started struct {
		OperationID string `json:"operation_id"`
	}
	require.NoError(t, json.Unmarshal(out, &started), string(out))
	id := started.OperationID
	require.NotEmpty(t, id)
	card := `article.op[data-operation="` + id + `"]`
	count := func(sel string) string { return `document.querySelectorAll(` + browsertest.JSString(sel) + `).length` }
	notice := func(want string) {
		t.Helper()
		check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
			n := op.Text("#notice")
			return check.That(n == want, "the notice says %q (it says %q)", want, n)
		})
	}
	answer := func(prompt, reason, screenshot string) {
		t.Helper()
		op.Do(chromedp.WaitVisible(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("confirm-reason")))
		assert.Contains(t, op.Text("#confirm-text"), prompt)
		assert.Empty(t, op.Value("#confirm-reason"), "each question starts without a reason")
		if reason == "" {
			op.Do(chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
			return
		}
		op.SetValue("#confirm-reason", reason)
		if screenshot != "" {
			op.Screenshot(screenshot)
		}
		op.Do(chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	}

	// The first wave (16 orders shards) is frozen, waiting for dc-a1's
	// barrier.
	first := desk.next(t)
	require.Equal(t, id, first.b.OperationID)
	require.Equal(t, "dc-a1", first.b.DC)
	require.Len(t, first.b.Shards, 16)
	op.WaitFor("the running evacuation shows its frozen wave", count(card+`[data-state="running"] tr[data-handoff] .badge.warn`)+` === 16`)
	assert.Contains(t, op.Text(card+" .progress label"), "0 of 24 shards handed over (0 moved, 0 skipped, 0 aborted), wave 0 of 3 done")
	assert.Zero(t, op.Count(card+` [data-action="resume"]`), "a running operation is not resumed")

	// Cancel asks first; answered Cancel, nothing is asked of the API.
	op.Click(card + ` [data-action="cancel"]`)
	answer("Stop evacuate "+id+" after its current wave?", "", "")
	assert.Equal(t, 1, op.Count(card+`[data-state="running"]`))
	// Confirmed with a reason, the operation is canceling: the wave
	// finishes first.
	op.Click(card + ` [data-action="cancel"]`)
	answer("Stop evacuate "+id+" after its current wave?", "wrong target", "dashboard-operation-cancel-confirm")
	notice("Cancel of " + id + " requested.")
	op.WaitFor("the evacuation is canceling", `document.querySelector(`+browsertest.JSString(card+`[data-state="canceling"]`)+`)`)
	assert.Zero(t, op.Count(card+` [data-action]`), "a canceling operation is neither canceled again nor resumed")
	assert.Equal(t, 16, op.Count(card+` tr[data-handoff] .badge.warn`), "its wave still frozen")
	cancels := events(t, st, "operation.cancel")
	require.Len(t, cancels, 1, "the cancel is audited once (the first question asked nothing)")
	assert.Equal(t, "token:oncall", cancels[0].Actor)
	assert.Equal(t, "wrong target", cancels[0].Params["reason"])
	op.Screenshot("dashboard-operation-canceling")

	// The wave goes through; the operation stops after it.
	desk.answer(t, first)
	op.WaitFor("the evacuation is canceled", `document.querySelector(`+browsertest.JSString(card+`[data-state="canceled"]`)+`)`)
	assert.Contains(t, op.Text(card+" .progress label"), "16 of 24 shards handed over (16 moved, 0 skipped, 0 aborted), wave 1 of 3 done")
	assert.Zero(t, op.Count(card+` [data-action="cancel"]`))
	owned := func() (n int) {
		for _, ks := range []string{"orders", "users"} {
			for _, s := range loadMap(t, st, ks).Shards {
				assert.Equal(t, shardmap.Active, s.State, "%s/%d is not frozen", ks, s.ID)
				if s.Owner == "dc-a1" {
					n++
				}
			}
		}
		return n
	}
	assert.Equal(t, 8, owned(), "dc-a1 keeps the 6 orders and 2 users shards of the waves not run")
	op.Screenshot("dashboard-operation-canceled")

	// Resume asks too, and the rest of the waves run.
	op.Click(card + ` [data-action="resume"]`)
	answer("Go on with evacuate "+id+" from where it stopped?", "target checked", "")
	notice("Resume of " + id + " requested.")
	for range 2 {
		a := desk.next(t)
		assert.Equal(t, id, a.b.OperationID)
		desk.answer(t, a)
	}
	op.WaitFor("the evacuation succeeded", `document.querySelector(`+browsertest.JSString(card+`[data-state="succeeded"]`)+`)`)
	assert.Contains(t, op.Text(card+" .progress label"), "24 of 24 shards handed over (24 moved, 0 skipped, 0 aborted), wave 3 of 3 done")
	assert.Zero(t, op.Count(card+` [data-action]`), "a finished operation has no action")
	assert.Zero(t, owned(), "dc-a1 owns no shard")
	resumes := events(t, st, "operation.resume")
	require.Len(t, resumes, 1)
	assert.Equal(t, "token:oncall", resumes[0].Actor)
	assert.Equal(t, "target checked", resumes[0].Params["reason"])
	assert.True(t, strings.HasPrefix(op.Text("#live"), "Live"), "the page stayed live")
}

// TestDashboardReleaseHold: a cluster whose HA agent holds its automatic
// failover shows the hold on the topology view, and an operator releases
// it there with the reason the API requires: the confirmation does not
// confirm without one (nor with a blank one).
func TestDashboardReleaseHold(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	now := time.Now().UTC()
	require.NoError(t, st.PutMemory(t.Context(), state.ClusterMemory{DC: "dc-a2", Cluster: "main", Hold: &state.FailoverHold{
		Reason: state.HoldFlapping, Detail: "3 failovers within 10m0s", Since: now.Add(-time.Minute), Until: now.Add(30 * time.Minute),
	}}, nil))
	c, _ := startDashboard(t, st, "127.0.0.1:0")

	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	cl := `[data-cluster="dc-a2/main"]`
	assert.Equal(t, "Automatic failover held (flapping): 3 failovers within 10m0s", op.Text(cl+" .hold"))
	assert.Equal(t, 1, op.Count(`[data-action="release-hold"]`), "only the held cluster offers a release")
	op.Click(cl + ` [data-action="release-hold"]`)
	op.Do(chromedp.WaitVisible(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("confirm-reason")))
	assert.Contains(t, op.Text("#confirm-text"), "fail over dc-a2/main automatically again?")
	assert.Equal(t, "Reason (required, kept in the audit log)", op.Text("#confirm-reason-label"))
	valid := func() bool { return evalBool(op, `document.getElementById('confirm-reason').checkValidity()`) }
	assert.False(t, valid(), "no reason")
	op.SetValue("#confirm-reason", "   ")
	assert.False(t, valid(), "a blank reason")
	// Confirm does not submit the dialog so.
	op.Click("#confirm-ok")
	assert.True(t, evalBool(op, `document.getElementById('confirm').open`), "the confirmation stays open")
	assert.Empty(t, events(t, st, control.ActionFailoverRelease), "nothing was asked of the API")
	op.SetValue("#confirm-reason", "disk replaced")
	assert.True(t, valid())
	op.Screenshot("dashboard-release-hold-confirm")
	op.Do(chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
		n := op.Text("#notice")
		return check.That(n == "Failover hold of dc-a2/main released.", "the notice reports the release (it says %q)", n)
	})
	rel, _, err := state.Get[state.HoldRelease](t.Context(), st, st.HoldReleaseKey("dc-a2", "main"))
	require.NoError(t, err, "the release is recorded for the HA agent")
	assert.Equal(t, "disk replaced", rel.Reason)
	evs := events(t, st, control.ActionFailoverRelease)
	require.Len(t, evs, 1)
	assert.Equal(t, "token:oncall", evs[0].Actor)
	assert.Equal(t, "disk replaced", evs[0].Params["reason"])

	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	assert.NotEmpty(t, viewer.Text(cl+" .hold"), "a viewer sees the hold")
	assert.Zero(t, viewer.Count("[data-action]"), "and releases nothing")
}

// evalBool is browsertest.Eval of a boolean.
func evalBool(p *browsertest.Tab, js string) bool { return browsertest.Eval[bool](p, js) }
