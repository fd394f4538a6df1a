package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

// startDashboard runs a coordinator with an audit store and an operator
// token on httpAddr ("127.0.0.1:0": a free port) over st; stop ends it
// (the test's end does too). Its handoffs wait 500 ms for a barrier.
func startDashboard(t *testing.T, st *state.Store, httpAddr string) (c *coord, stop func()) {
	t.Helper()
	return startDashboardWith(t, st, httpAddr, coordinator.HandoffOptions{RouterGrace: 100 * time.Millisecond, CatchUp: 500 * time.Millisecond})
}

// startDashboardWith is startDashboard with the handoffs' waits.
func startDashboardWith(t *testing.T, st *state.Store, httpAddr string, handoff coordinator.HandoffOptions) (c *coord, stop func()) {
	t.Helper()
	docs, err := embedded.Open(embedded.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	n, err := coordinator.NewNode(coordinator.NodeOptions{
		Store: st, ID: "coord-ui", GRPCAddr: "127.0.0.1:0", HTTPAddr: httpAddr,
		Tokens: []auth.Token{
			{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
			{Name: "oncall", Role: "operator", SHA256: auth.Hash(operatorToken)},
			{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
		},
		LeaderTTL: 2 * time.Second, Logger: zerolog.Nop(), Audit: coordinator.AuditOptions{Docs: docs},
		Handoff: handoff,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(callTimeout):
			t.Error("coordinator did not stop")
		}
		_ = docs.Close()
	}
	t.Cleanup(stop)
	check.For(t, callTimeout, 5*time.Millisecond, func() error { return check.That(n.CacheReady() == nil, "n.CacheReady() == nil") })
	check.For(t, callTimeout, 5*time.Millisecond, func() error { return check.That(n.Leader.IsLeader(), "the coordinator leads") })
	return &coord{id: "coord-ui", node: n, base: "http://" + n.Server.HTTPAddr()}, stop
}

// dashboardState seeds the lab layout, the HA agents' observations and
// two failover records.
func dashboardState(t *testing.T) *state.Store {
	t.Helper()
	st := state.New(harness.EtcdClient(t), "")
	seed(t, st)
	for _, dc := range []string{"dc-a1", "dc-a2", "dc-b1"} {
		observe(t, st, dc, dc+"-db1")
	}
	at := time.Now().UTC().Add(-time.Hour)
	for _, r := range []state.FailoverRecord{
		{ID: state.NewRecordID(at, "dc-a2", "main"), DC: "dc-a2", Cluster: "main", Kind: state.KindFailover, Trigger: "analysis",
			Analysis: "DeadMaster", OldMaster: "dc-a2-db2", NewMaster: "dc-a2-db1", Outcome: state.OutcomeSucceeded,
			DetectedAt: at, StartedAt: at, WritableAt: at.Add(1200 * time.Millisecond), FinishedAt: at.Add(2 * time.Second),
			RTO: state.Duration(1200 * time.Millisecond), RPOTransactions: 0, Agent: "dc-a2-haagent-1"},
		{ID: state.NewRecordID(at.Add(time.Minute), "dc-b1", "main"), DC: "dc-b1", Cluster: "main", Kind: state.KindSwitchover,
			Trigger: "operator:oncall", OldMaster: "dc-b1-db2", NewMaster: "dc-b1-db1", Outcome: state.OutcomeSucceeded,
			DetectedAt: at.Add(time.Minute), StartedAt: at.Add(time.Minute), RTO: state.Duration(300 * time.Millisecond),
			BlockWindow: state.Duration(250 * time.Millisecond), Agent: "dc-b1-haagent-1"},
	} {
		require.NoError(t, st.PutFailover(context.Background(), r, nil))
	}
	return st
}

// TestDashboardViews walks the shard map, the operations, the failover
// history and the audit search in a real browser, as an operator and as
// a viewer.
func TestDashboardViews(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	c, _ := startDashboard(t, st, "127.0.0.1:0")

	// An operator freezes orders shard 5.
	code, out := c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/5:setState", adminToken,
		`{"state":"SHARD_STATE_FROZEN","reason":"maintenance"}`)
	require.Equal(t, http.StatusOK, code, string(out))

	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	op.Do(chromedp.Navigate(c.base+"/ui/#/shards/orders"), chromedp.WaitVisible(chromedp.CSS(".shardgrid")))
	assert.Equal(t, 64, op.Count(".shardgrid .shard"))
	assert.Equal(t, "frozen", browsertest.Get(op, chromedp.Evaluate[string](`document.querySelector('[data-shard="5"]').dataset.state`)))
	m := loadMap(t, st, "orders")
	op.Click(`.shardgrid [data-shard="9"]`)
	op.Do(chromedp.WaitVisible(chromedp.CSS(`[data-route="9"]`)))
	route := op.Text(`[data-route="9"]`)
	assert.Contains(t, route, "Owner DC"+m.Shards[9].Owner)
	assert.Contains(t, route, "Master"+m.Shards[9].Owner+"-db1", "the owner's master from its record")
	op.Screenshot("dashboard-shards")

	// Unfrozen, the shard turns active on the page by itself.
	code, out = c.rest(t, http.MethodPost, "/v1/keyspaces/orders/shards/5:setState", adminToken,
		`{"state":"SHARD_STATE_ACTIVE","reason":"done"}`)
	require.Equal(t, http.StatusOK, code, string(out))
	op.WaitFor("shard 5 is active again", `document.querySelector('[data-shard="5"]').dataset.state === "active"`)
	assert.NotEmpty(t, op.Text(`[data-route="9"]`), "the route stays open across the update")

	// An evacuation appears with its progress; no collector answers its
	// barriers here, so its first wave aborts and it ends FAILED.
	// The operator plans it with the form first: a dry run stores nothing.
	op.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.ID("dcop-form")))
	assert.Equal(t, "evacuate", op.Value("#dcop-kind"))
	op.SetValue("#dcop-dc", "dc-a1")
	op.SetValue("#dcop-parallel", "8")
	op.SetValue("#dcop-reason", "maintenance")
	op.Click("#dcop-dry-run")
	confirm := func(wantText, ok string) {
		t.Helper()
		op.Click("#dcop-submit")
		answerConfirm(t, op, wantText, ok)
	}
	confirm("Evacuate dc-a1: hand every shard it owns to its backup DC, 8 at a time", "confirm-ok")
	notice := func(want string) {
		t.Helper()
		check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
			n := op.Text("#notice")
			return check.That(strings.HasPrefix(n, want), "the notice starts with %q (it says %q)", want, n)
		})
	}
	// The same plan through the REST API.
	code, out = c.rest(t, http.MethodPost, "/v1/dcs/dc-a1:evacuate", adminToken, `{"parallel":8,"dry_run":true}`)
	require.Equal(t, http.StatusOK, code, string(out))
	var plan struct {
		Operation struct {
			Totals struct{ Shards, Waves int }
		}
	}
	require.NoError(t, json.Unmarshal(out, &plan), string(out))
	require.Equal(t, 24, plan.Operation.Totals.Shards)
	notice(fmt.Sprintf("Plan of the evacuate of dc-a1: 24 shards in %d waves; nothing changed.", plan.Operation.Totals.Waves))
	assert.Zero(t, op.Count("article.op"), "a dry run stores no operation")
	// Cancelled at the confirmation, it asks nothing of the API.
	op.Click("#dcop-dry-run")
	confirm("Evacuate dc-a1", "confirm-cancel")
	assert.Empty(t, events(t, st, "evacuation.request"))
	assert.Zero(t, op.Count("article.op"))
	// Confirmed, it starts.
	confirm("Evacuate dc-a1", "confirm-ok")
	op.WaitFor("the evacuation is listed", `document.querySelector('article.op')`)
	notice("Evacuation of dc-a1 started: operation ")
	assert.Empty(t, op.Value("#dcop-reason"), "the reason is cleared for the next one")
	op.WaitFor("the evacuation failed", `document.querySelector('article.op[data-state="failed"]')`)
	card := `article.op[data-state="failed"]`
	assert.Contains(t, op.Text(card+" h3"), "evacuate dc-a1")
	assert.Contains(t, op.Text(card+" .progress label"), "0 of 24 shards handed over (0 moved, 0 skipped, 8 aborted)")
	assert.Contains(t, op.Text(card+" .err"), "barrier")
	op.Click(card + " details summary")
	op.WaitFor("the operation's shards are listed", `document.querySelectorAll('`+card+` tr[data-handoff]').length > 0`)
	rows := op.Count(card + ` tr[data-handoff]`)
	assert.Equal(t, fmt.Sprintf("Shards (%d)", rows), op.Text(card+" details summary"))
	assert.Equal(t, 8, op.Count(card+` tr[data-handoff] .badge.bad`), "the first wave's shards, each aborted")
	assert.Equal(t, 1, op.Count(card+` [data-action="resume"]`))
	assert.Zero(t, op.Count(card+` [data-action="cancel"]`), "a failed operation is not canceled")
	op.Screenshot("dashboard-operations")

	// A restore's form: its own fields, and the plan of handing the home
	// shards back (none moved away: the evacuation failed; a
	// running one would refuse it).
	op.SetValue("#dcop-kind", "restore")
	op.Do(chromedp.WaitVisible(chromedp.ID("dcop-move-home")))
	assert.Zero(t, op.Count("#dcop-to"), "a restore has no target DC")
	op.Click("#dcop-move-home")
	op.Click("#dcop-dry-run")
	op.SetValue("#dcop-reason", "back")
	confirm("Restore dc-a1: set it ACTIVE again and hand its home shards back to it, 8 at a time.", "confirm-ok")
	notice("Plan of the restore of dc-a1: ")
	op.Screenshot("dashboard-operations-form")

	op.Click(card + ` [data-action="resume"]`)
	answerConfirm(t, op, "", "confirm-ok")
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		return check.That(len(events(t, st, "operation.resume")) == 1, "the resume is audited")
	})
	assert.Equal(t, "token:oncall", events(t, st, "operation.resume")[0].Actor)
	req := events(t, st, "evacuation.request")
	require.Len(t, req, 1, "the form's evacuation is audited once")
	assert.Equal(t, "token:oncall", req[0].Actor)
	assert.Equal(t, "maintenance", req[0].Params["reason"])
	assert.Equal(t, "8", req[0].Params["parallel"])

	// The failover history with RTO and RPO.
	op.Do(chromedp.Navigate(c.base+"/ui/#/failovers"), chromedp.WaitVisible(chromedp.CSS(".failovers table")))
	assert.Equal(t, 2, op.Count("tr[data-failover]"))
	first := `tr[data-failover]:last-child`
	assert.Equal(t, "1.20 s", op.Text(first+" [data-rto]"))
	assert.Equal(t, "0 transactions", op.Text(first+" [data-rpo]"))
	assert.Contains(t, op.Text(first), "DeadMaster")
	op.Screenshot("dashboard-failovers")

	// The audit search finds the evacuation request by action.
	op.Do(chromedp.Navigate(c.base+"/ui/#/audit"), chromedp.WaitVisible(chromedp.ID("audit-action")),
		chromedp.SendKeys(chromedp.ID("audit-action"), "evacuation.request"))
	check.For(t, browsertest.StepTimeout, 100*time.Millisecond, func() error {
		op.Click("#audit-search")
		n := op.Count("tr[data-audit]")
		return check.That(n == 1, "one evacuation.request event found (found %d)", n)
	})
	assert.Contains(t, op.Text("tr[data-audit]"), "dc-a1")
	assert.Equal(t, "evacuation.request", op.Value("#audit-action"), "the filter stays")
	op.Screenshot("dashboard-audit")

	// A viewer sees the same operations, without an action.
	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	viewer.Do(chromedp.Navigate(c.base+"/ui/#/operations"), chromedp.WaitVisible(chromedp.CSS("article.op")))
	assert.Positive(t, viewer.Count("article.op"))
	assert.Zero(t, viewer.Count("#dcop-form"), "no evacuate or restore form for a viewer")
	for _, view := range []string{"operations", "shards", "failovers", "audit", "replication", "topology"} {
		viewer.Do(chromedp.Navigate(c.base+"/ui/#/"+view), chromedp.WaitVisible(chromedp.CSS("#view ."+view)))
		assert.Zero(t, viewer.Count("[data-action]"), "a viewer sees no operator action on %s", view)
	}
}

// TestDashboardReconnects stops the coordinator under an open page: the
// page shows the lost stream, and when a coordinator serves the port
// again it reconnects by itself and shows what changed meanwhile.
func TestDashboardReconnects(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	c, stop := startDashboard(t, st, "127.0.0.1:0")
	addr := c.node.Server.HTTPAddr()

	page := b.Tab(t)
	page.Login(c.base, viewerToken)
	page.Do(chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)))
	assert.Contains(t, page.Text(`[data-cluster="dc-a2/main"] .master`), "dc-a2-db1")

	stop()
	page.Do(chromedp.WaitVisible(chromedp.CSS(`#live[data-state="lost"]`)))
	assert.Contains(t, page.Text("#live"), "Connection lost")
	page.Screenshot("dashboard-connection-lost")

	// dc-a2 fails over while no coordinator serves the page.
	ctx := context.Background()
	rec, rev, err := st.Master(ctx, "dc-a2", "main")
	require.NoError(t, err)
	rec.Instance, rec.Term = "dc-a2-db2", rec.Term+1
	_, err = st.PutMaster(ctx, rec, rev, nil)
	require.NoError(t, err)
	observe(t, st, "dc-a2", "dc-a2-db2")

	startDashboard(t, st, addr)
	page.Do(chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)))
	page.WaitFor("the page shows the new master of dc-a2",
		`document.querySelector('[data-cluster="dc-a2/main"] .master').textContent.includes("dc-a2-db2")`)
	assert.Contains(t, page.Text("#who"), "dashboard (viewer)", "still signed in")
}
