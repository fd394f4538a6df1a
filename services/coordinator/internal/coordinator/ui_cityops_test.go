package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	"github.com/drplane/drplane/services/coordinator/internal/cityfail"
)

// screenshots saves the page as name-light.png and name-dark.png and
// leaves it in the theme it had.
func screenshots(p *browsertest.Tab, name string) {
	dark := browsertest.Eval[bool](p, `document.documentElement.dataset.theme === "dark"`)
	p.Screenshot(name + map[bool]string{false: "-light", true: "-dark"}[dark])
	p.Click("#theme")
	p.WaitFor("the theme switched", fmt.Sprintf(`(document.documentElement.dataset.theme === "dark") === %t`, !dark))
	p.Screenshot(name + map[bool]string{false: "-light", true: "-dark"}[!dark])
	p.Click("#theme")
	p.WaitFor("the theme switched back", fmt.Sprintf(`(document.documentElement.dataset.theme === "dark") === %t`, dark))
}

// TestDashboardCityFailover: dc-a1's lease is gone and an admin fails it
// over through the API; orders (max_rpo 1s, its loss window unknown) is
// held. The operations view, open before, shows the held failover by
// itself: flipped and held shards, why they are held, the loss estimate.
// A viewer sees it with no action; the operator accepts the loss from the
// page — asked first, with the reason the page requires — and the same
// failover flips the rest, as the shard maps say.
func TestDashboardCityFailover(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	leases(t, st, "dc-a2", "dc-b1")
	setKeyspace(t, st, "orders", func(ks *topology.Keyspace) { ks.MaxRPO = "1s" })
	c, _ := startDashboard(t, st, "127.0.0.1:0")
	require.Positive(t, owned(t, st, "orders", "dc-a1"))

	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	op.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.ID("dcop-form")))
	assert.Zero(t, op.Count("article.cityfailover"))

	code, out := c.rest(t, http.MethodPost, "/v1/dcs/dc-a1:failover", adminToken, `{"reason":"flooded"}`)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Contains(t, string(out), "CITY_FAILOVER_STATE_HELD")
	ordersHeld := owned(t, st, "orders", "dc-a1")
	require.Positive(t, ordersHeld, "orders is held")
	require.Zero(t, owned(t, st, "users", "dc-a1"), "users is flipped")

	card := `article.cityfailover[data-state="held"]`
	op.WaitFor("the held city failover shows", `document.querySelector('`+card+` tr[data-cityshard]')`)
	assert.Contains(t, op.Text(card+" h3"), "city failover of dc-a1")
	total := op.Count(card + " tr[data-cityshard]")
	flipped := op.Count(card + ` tr[data-cityshard][data-state="flipped"]`)
	assert.Equal(t, ordersHeld, op.Count(card+` tr[data-cityshard][data-state="held"]`), "every orders shard of dc-a1 held")
	assert.Equal(t, total, flipped+ordersHeld)
	assert.Equal(t, fmt.Sprintf("%d of %d shards flipped, %d held", flipped, total, ordersHeld), op.Text(card+" .progress label"))
	reasons := op.Text(card + " ul.reasons")
	assert.Contains(t, reasons, fmt.Sprintf("%d shards held: ", ordersHeld))
	assert.Contains(t, reasons, "max_rpo")
	assert.Contains(t, op.Text(card+" [data-rpo]"), "the loss window of some shard is unknown")
	assert.Contains(t, op.Text(card+" .meta"), "operator:ops-admin")
	assert.Contains(t, op.Text(card+" .meta"), "“flooded”")
	assert.Contains(t, op.Text(card+" .meta"), "held since")
	assert.Equal(t, 1, op.Count(card+` [data-action="city-failover-accept-loss"]`))
	assert.Equal(t, 1, op.Count(card+` [data-action="city-failover"]`))
	screenshots(op, "dashboard-cityfailover-held")

	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	viewer.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.CSS(card)))
	assert.Contains(t, viewer.Text(card+" ul.reasons"), "max_rpo", "a viewer sees why")
	assert.Zero(t, viewer.Count("[data-action]"), "and decides nothing")

	// Asked first: answered Cancel, nothing is asked of the API.
	requests := func() int { return len(events(t, st, "city_failover.request")) }
	before := requests()
	op.Click(card + ` [data-action="city-failover-accept-loss"]`)
	op.Do(chromedp.WaitVisible(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("confirm-reason")))
	assert.Contains(t, op.Text("#confirm-text"), "including those over their keyspace's max_rpo")
	op.Do(chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	assert.Equal(t, before, requests())
	assert.Equal(t, ordersHeld, owned(t, st, "orders", "dc-a1"))

	// Confirm needs a reason.
	op.Click(card + ` [data-action="city-failover-accept-loss"]`)
	op.Do(chromedp.WaitVisible(chromedp.ID("confirm-reason")))
	assert.Equal(t, "Reason (required, kept in the audit log)", op.Text("#confirm-reason-label"))
	op.Click("#confirm-ok")
	assert.True(t, evalBool(op, `document.getElementById('confirm').open`), "no reason: the confirmation stays open")
	op.SetValue("#confirm-reason", "orders loss budget waived")
	op.Screenshot("dashboard-cityfailover-accept-confirm")
	op.Do(chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		n := op.Text("#notice")
		return check.That(strings.HasPrefix(n, "City failover ") && strings.HasSuffix(n, fmt.Sprintf(" of dc-a1: done, %d of %d shards flipped.", total, total)),
			"the notice reports the failover done (it says %q)", n)
	})
	assert.Zero(t, owned(t, st, "orders", "dc-a1"), "orders flipped")
	evs := events(t, st, "city_failover.request")
	require.Len(t, evs, before+1, "asked once")
	last := evs[len(evs)-1]
	assert.Equal(t, "token:oncall", last.Actor)
	assert.Equal(t, "true", last.Params["accept_loss"])
	assert.Equal(t, "orders loss budget waived", last.Params["reason"])
	flips := events(t, st, cityfail.ActionFlip)
	require.NotEmpty(t, flips)
	assert.Equal(t, "token:oncall", flips[len(flips)-1].Actor)

	done := `article.cityfailover[data-state="done"]`
	op.WaitFor("the failover is done", `document.querySelector('`+done+`')`)
	assert.Zero(t, op.Count(card), "no longer held")
	assert.Contains(t, op.Text(done+" h3"), "loss accepted")
	assert.Zero(t, op.Count(done+" [data-action]"), "a finished failover has no action")
	assert.Contains(t, op.Text(done+" [data-rto]"), "shards flipped ")
	op.Click(done + " details summary")
	op.WaitFor("its shards are listed", fmt.Sprintf(`document.querySelectorAll('%s tr[data-cityshard][data-state="flipped"]').length === %d`, done, total))
	screenshots(op, "dashboard-cityfailover-done")
	viewer.WaitFor("the viewer's page follows", `document.querySelector('`+done+`')`)
}

// playSwitchover stands in for dc's HA agent: it takes up the switchover
// intent of cluster main once it is stored, writes its record RUNNING with
// a first step and sends its id on running, and writes the outcome once
// finish is closed. It runs beside the test: it returns its error.
func playSwitchover(st *state.Store, dc, from, to string, running chan<- string, finish <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	// The intent's changes from now, then a read: one stored before the
	// watch began is read, one stored after it arrives on the watch.
	events := st.WatchSwitchovers(ctx, dc, 0)
	in, rev, err := st.Switchover(ctx, dc, "main")
	for err != nil || in.State != state.SwitchoverPending || in.Cluster != "main" {
		ev, ok := <-events
		if !ok {
			if err == nil {
				err = fmt.Errorf("intent in state %s", in.State)
			}
			return fmt.Errorf("no pending switchover intent of %s/main (last read: %w)", dc, err)
		}
		in, rev, err = ev.Value, ev.Rev, nil
		if ev.Deleted {
			err = errors.New("intent deleted")
		}
	}
	now := time.Now().UTC()
	rec := state.FailoverRecord{ID: state.NewRecordID(now, dc, "main"), DC: dc, Cluster: "main", Kind: state.KindSwitchover,
		Trigger: "operator:" + in.RequestedBy, OldMaster: from, NewMaster: to, Outcome: state.OutcomeRunning,
		DetectedAt: in.RequestedAt, StartedAt: now, RPOTransactions: 0, Agent: dc + "-haagent-1",
		Steps: []state.Step{{Name: "fence-old-master", At: now, Took: state.Duration(40 * time.Millisecond)}}}
	if err := st.PutFailover(ctx, rec, nil); err != nil {
		return err
	}
	in.State, in.RecordID = state.SwitchoverRunning, rec.ID
	rev, err = st.UpdateSwitchover(ctx, in, rev, nil)
	if err != nil {
		return err
	}
	running <- rec.ID
	select {
	case <-finish:
	case <-ctx.Done():
		return ctx.Err()
	}
	end := time.Now().UTC()
	rec.Outcome, rec.WritableAt, rec.FinishedAt = state.OutcomeSucceeded, end, end
	rec.RTO, rec.BlockWindow = state.Duration(1350*time.Millisecond), state.Duration(420*time.Millisecond)
	rec.Steps = append(rec.Steps, state.Step{Name: "promote " + to, At: end, Took: state.Duration(120 * time.Millisecond)})
	if err := st.PutFailover(ctx, rec, nil); err != nil {
		return err
	}
	in.State = state.SwitchoverDone
	_, err = st.UpdateSwitchover(ctx, in, rev, nil)
	return err
}

// TestDashboardSwitchover: an operator switches dc-a1/main over from the
// topology view; while the (stand-in) HA agent runs it, the operations
// view of a viewer shows it running with its first step, and once done,
// among the last switchovers with its RTO and write block.
func TestDashboardSwitchover(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	c, _ := startDashboard(t, st, "127.0.0.1:0")

	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	viewer.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.CSS("#view .operations")))
	recent := `article.switchover[data-state="succeeded"]`
	assert.Equal(t, 1, viewer.Count(recent), "the seeded switchover of dc-b1")
	assert.Contains(t, viewer.Text(recent+" [data-figures]"), "write block 0.25 s")

	running := make(chan string, 1)
	finish := make(chan struct{})
	agent := make(chan error, 1)
	go func() { agent <- playSwitchover(st, "dc-a1", "dc-a1-db1", "dc-a1-db2", running, finish) }()
	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	op.Click(`[data-cluster="dc-a1/main"] [data-action="switchover"]`)
	answerConfirm(t, op, "dc-a1/main", "confirm-ok")

	var id string
	select {
	case id = <-running:
	case err := <-agent:
		t.Fatalf("the stand-in agent: %v", err)
	}
	card := `article.switchover[data-switchover="` + id + `"]`
	viewer.WaitFor("the running switchover shows", `document.querySelector('`+card+`[data-state="running"]')`)
	assert.Contains(t, viewer.Text(card+" h3"), "switchover dc-a1/main")
	assert.Contains(t, viewer.Text(card+" .meta"), "dc-a1-db1 → dc-a1-db2 · operator:oncall · by dc-a1-haagent-1")
	assert.Equal(t, "RTO not yet · RPO not yet · write block not yet", viewer.Text(card+" [data-figures]"))
	assert.Equal(t, 1, viewer.Count(card+` tr[data-step="fence-old-master"]`))
	assert.Contains(t, viewer.Text("#view .summary"), "1 running or held")
	screenshots(viewer, "dashboard-switchover-running")

	close(finish)
	require.NoError(t, <-agent)
	observe(t, st, "dc-a1", "dc-a1-db2")
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		n := op.Text("#notice")
		return check.That(n == "Switchover of dc-a1/main done.", "the operator's notice (it says %q)", n)
	})
	viewer.WaitFor("the switchover is among the last ones", `document.querySelector('`+card+`[data-state="succeeded"]')`)
	assert.Equal(t, "RTO 1.35 s · RPO 0 transactions · write block 0.42 s", viewer.Text(card+" [data-figures]"))
	assert.Equal(t, 2, viewer.Count(recent))
	assert.Contains(t, viewer.Text("#view .summary"), "0 running or held")
	assert.Zero(t, viewer.Count("[data-action]"), "a viewer sees no operator action")
	screenshots(viewer, "dashboard-switchover-done")
}
