package coordinator_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/repl"
)

// TestDashboardReplication shows the replication between DCs from the
// collectors' statistics: lag, backlog and dead letters per pair, a
// sparkline that grows with each report pushed to the page, and, for an
// operator, the dead letters' retry behind a confirmation (refused here:
// this coordinator has no NATS, and the page says why).
func TestDashboardReplication(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	c, _ := startDashboard(t, st, "127.0.0.1:0")
	report := func(lagP99 float64) {
		t.Helper()
		now := time.Now().UTC()
		for _, s := range []state.ReplStats{
			{DC: "dc-b1", Origin: "dc-a1", Collector: "dc-b1-collector-1", Applied: 1200, EventsPerSec: 410.5,
				LagP50Ms: 3.2, LagP99Ms: lagP99, Pending: 17, DeadLettered: 2, LastAppliedAt: now.Add(-time.Second), UpdatedAt: now},
			{DC: "dc-a2", Origin: "dc-a1", Collector: "dc-a2-collector-1", Applied: 1201, EventsPerSec: 12, LagP50Ms: 1, LagP99Ms: 2, UpdatedAt: now},
		} {
			_, err := state.Put(context.Background(), st, st.ReplStatsKey(s.DC, s.Origin), s, state.PutOptions{PrevRev: -1})
			require.NoError(t, err)
		}
	}
	report(41.7)

	op := b.Tab(t)
	op.Login(c.base, operatorToken)
	op.Do(chromedp.Navigate(c.base+"/ui/#/replication"), chromedp.WaitVisible(chromedp.CSS(".replication table")))
	assert.Equal(t, 6, op.Count("tr[data-pair]"), "every ordered pair of the 3 DCs")
	pair := `tr[data-pair="dc-a1>dc-b1"]`
	op.WaitFor("dc-a1 → dc-b1 reports", `document.querySelector('`+pair+` [data-lag]').textContent === "3.2 ms / 41.7 ms"`)
	assert.Equal(t, "410.5/s", op.Text(pair+" [data-rate]"))
	assert.Equal(t, "17", op.Text(pair+" [data-pending]"))
	assert.Equal(t, "2", op.Text(pair+" [data-dead]"))
	assert.Equal(t, "no report", op.Text(`tr[data-pair="dc-b1>dc-a1"] .badge`), "no collector reports dc-b1 in dc-a1")
	samples := func() int {
		return browsertest.Get(op, chromedp.Evaluate[int](`Number(document.querySelector('`+pair+` .sparkcell').dataset.samples)`))
	}
	assert.Equal(t, 1, samples(), "one report read so far")

	// Each new report reaches the page by itself and adds a sample.
	for i := 2; i <= 3; i++ {
		report(41.7 + float64(i-1)*15)
		check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
			n := samples()
			return check.That(n >= i, "the sparkline has %d samples (has %d)", i, n)
		})
	}
	assert.Contains(t, browsertest.Get(op, chromedp.Evaluate[string](`document.querySelector('`+pair+` svg').getAttribute('aria-label')`)),
		"at most 71.7 ms", "the sparkline says its range")
	assert.Equal(t, 3, len(browsertest.Get(op, chromedp.Evaluate[[]string](
		`document.querySelector('`+pair+` polyline').getAttribute('points').split(' ')`))))

	// The dead letters' retry asks first; this coordinator cannot reach
	// NATS, and the page shows the API's refusal.
	require.Equal(t, 1, op.Count(`[data-action="dlq-retry"]`))
	assert.Equal(t, "Retry 2 dead letters of dc-b1…", op.Text(`[data-action="dlq-retry"]`))
	op.Screenshot("dashboard-replication")
	op.Click(`[data-action="dlq-retry"]`)
	answerConfirm(t, op, "2 dead letters of dc-b1", "confirm-ok")
	check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
		n := op.Text("#notice")
		return check.That(strings.HasPrefix(n, "Retry of the dead letters of dc-b1 refused: "), "the refusal is shown (notice %q)", n)
	})

	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	viewer.Do(chromedp.Navigate(c.base+"/ui/#/replication"), chromedp.WaitVisible(chromedp.CSS(".replication table")))
	assert.Equal(t, 6, viewer.Count("tr[data-pair]"))
	assert.Zero(t, viewer.Count("[data-action]"), "a viewer retries no dead letter")
}

// TestDashboardDeadLetterRetry: with the DCs' JetStream (real NATS, one
// server per DC), an operator puts dc-b1's dead letters back from the
// replication view: asked first, each is on dc-b1's inbound stream again
// on the replay subject, the dead-letter stream is empty, the page says so
// and the retry is audited; the collector's next report takes the action
// off the page.
func TestDashboardDeadLetterRetry(t *testing.T) {
	b := browsertest.New(t)
	l := startReplLab(t)
	seqs := map[string]uint64{
		"dc-a1": l.deadLetter(t, "dc-b1", "dc-a1", "1-101-9/5", 31),
		"dc-a2": l.deadLetter(t, "dc-b1", "dc-a2", "2-201-3/5", 32),
	}
	report := func(dead uint64) {
		t.Helper()
		now := time.Now().UTC()
		for _, origin := range []string{"dc-a1", "dc-a2"} {
			s := state.ReplStats{DC: "dc-b1", Origin: origin, Collector: "dc-b1-collector-1", Applied: 100, EventsPerSec: 25,
				LagP50Ms: 2.5, LagP99Ms: 9.1, DeadLettered: dead, LastAppliedAt: now, UpdatedAt: now}
			_, err := state.Put(context.Background(), l.st, l.st.ReplStatsKey(s.DC, s.Origin), s, state.PutOptions{PrevRev: -1})
			require.NoError(t, err)
		}
	}
	report(1)

	op := b.Tab(t)
	op.Login(l.c.base, operatorToken)
	op.Do(chromedp.Navigate(l.c.base+"/ui/#/replication"), chromedp.WaitVisible(chromedp.CSS(`[data-action="dlq-retry"]`)))
	assert.Equal(t, "Retry 2 dead letters of dc-b1…", op.Text(`[data-action="dlq-retry"]`))
	op.Click(`[data-action="dlq-retry"]`)
	answerConfirm(t, op, "Put the 2 dead letters of dc-b1 back on its inbound stream?", "confirm-ok")
	check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
		n := op.Text("#notice")
		return check.That(n == "Dead letters of dc-b1: 2 put back, 0 failed.", "the notice reports the retry (it says %q)", n)
	})
	assert.Equal(t, "status", browsertest.Get(op, chromedp.Evaluate[string](`document.getElementById('notice').getAttribute('role')`)),
		"a success, not an alert")
	op.Screenshot("dashboard-replication-retried")

	// Each is on dc-b1's inbound stream again, from its origin, and out of
	// the dead-letter stream.
	in, err := l.js["dc-b1"].Stream(t.Context(), embednats.InStream("dc-b1"))
	require.NoError(t, err)
	for origin, seq := range seqs {
		raw, err := in.GetLastMsgForSubject(t.Context(), embednats.ReplaySubject("dc-b1")+"."+origin)
		require.NoError(t, err, "the dead letter of %s is replayed", origin)
		assert.Equal(t, strconv.FormatUint(seq, 10), raw.Header.Get(embednats.HeaderRetryOfDLQ))
		assert.Equal(t, origin, raw.Header.Get(embednats.HeaderOrigin))
	}
	dlq, err := l.js["dc-b1"].Stream(t.Context(), embednats.DLQStream("dc-b1"))
	require.NoError(t, err)
	info, err := dlq.Info(t.Context())
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "the dead-letter stream is empty")
	evs := events(t, l.st, repl.ActionDLQRetry)
	require.Len(t, evs, 1, "one retry, audited")
	assert.Equal(t, "token:oncall", evs[0].Actor)
	assert.Equal(t, audit.OutcomeOK, evs[0].Outcome)
	assert.Equal(t, "dc-b1", evs[0].Target)
	assert.Equal(t, "2", evs[0].Params["retried"])

	// The collector reports no dead letter any more: no retry is offered.
	report(0)
	op.WaitFor("the retry is gone with the dead letters", `!document.querySelector('[data-action="dlq-retry"]')`)
	assert.Equal(t, "0", op.Text(`tr[data-pair="dc-a1>dc-b1"] [data-dead]`))
}
