package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
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
	op.Do(chromedp.WaitVisible(chromedp.ID("confirm")))
	assert.Contains(t, op.Text("#confirm-text"), "2 dead letters of dc-b1")
	op.Do(chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
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
