package coordinator_test

import (
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"

	"github.com/drplane/drplane/pkg/browsertest"
)

// unlabelled lists, as text, the controls of the page that a screen reader
// could not name: inputs and selects without a label, buttons and links
// without text or aria-label, tables without a caption or header cells.
const unlabelled = `(() => {
  const bad = [];
  for (const el of document.querySelectorAll('#view input, #view select')) {
    if (!el.labels || !el.labels.length) bad.push(el.outerHTML.slice(0, 80));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (el.closest('[hidden]')) continue;
    if (!(el.getAttribute('aria-label') || el.textContent.trim())) bad.push(el.outerHTML.slice(0, 80));
  }
  for (const t of document.querySelectorAll('#view table')) {
    if (!t.querySelector('caption') || !t.querySelector('th')) bad.push('table ' + t.className);
  }
  return bad.join('\n');
})()`

// press sends one key to the page as a user would.
func press(key string) chromedp.Action[chromedp.Void] {
	return chromedp.KeyEvent(key)
}

// TestDashboardAccessible: every view names its controls for screen
// readers, the keyboard alone switches views, walks the shard map, opens
// a route and answers a confirmation; the dark theme applies.
func TestDashboardAccessible(t *testing.T) {
	b := browsertest.New(t)
	st := dashboardState(t)
	c, _ := startDashboard(t, st, "127.0.0.1:0")
	page := b.Tab(t)
	page.Login(c.base, operatorToken)

	for i, view := range []string{"topology", "shards", "operations", "failovers", "audit", "replication"} {
		// The keys 1 to 6 switch views.
		page.Do(press(string(rune('1'+i))), chromedp.WaitVisible(chromedp.CSS("#view ."+view)))
		assert.Equal(t, "page", browsertest.Get(page, chromedp.Evaluate[string](
			`document.querySelector('#nav a[data-view="`+view+`"]').getAttribute('aria-current')`)), view)
		assert.Empty(t, browsertest.Get(page, chromedp.Evaluate[string](unlabelled)), "unnamed controls on %s", view)
	}

	// The shard map by keyboard: arrows move, Enter opens the route.
	page.Do(press("2"), chromedp.WaitVisible(chromedp.CSS(".shardgrid")),
		chromedp.Focus(chromedp.CSS(`.shardgrid [data-shard="0"]`)),
		press(kb.ArrowRight), press(kb.ArrowRight), press(kb.ArrowDown))
	perRow := browsertest.Get(page, chromedp.Evaluate[int](
		`[...document.querySelectorAll('.shardgrid .shard')].filter((c, _, a) => c.offsetTop === a[0].offsetTop).length`))
	focused := browsertest.Get(page, chromedp.Evaluate[string](`document.activeElement.dataset.shard`))
	assert.Equal(t, strconv.Itoa(2+perRow), focused, "two right and one down from shard 0")
	page.Do(press(kb.Enter), chromedp.WaitVisible(chromedp.CSS(`[data-route="`+focused+`"]`)))
	assert.Equal(t, focused, browsertest.Get(page, chromedp.Evaluate[string](`document.activeElement.dataset.shard`)),
		"the focus stays on the shard across the re-render")

	// An operator action by keyboard: the confirmation takes the focus on
	// Cancel, Escape closes it, and the focus returns to the button.
	page.Do(press("1"), chromedp.WaitVisible(chromedp.CSS(`[data-action="switchover"]`)),
		chromedp.Focus(chromedp.CSS(`[data-cluster="dc-a1/main"] [data-action="switchover"]`)),
		press(kb.Enter), chromedp.WaitVisible(chromedp.ID("confirm")))
	assert.Equal(t, "confirm-cancel", browsertest.Get(page, chromedp.Evaluate[string](`document.activeElement.id`)))
	page.Do(chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	assert.Equal(t, "switchover", browsertest.Get(page, chromedp.Evaluate[string](`document.activeElement.dataset.action`)))
	assert.Empty(t, events(t, st, "failover.switchover"), "nothing was asked of the API")

	// The dark theme.
	light := browsertest.Get(page, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	page.Do(chromedp.Click(chromedp.ID("theme")))
	assert.Equal(t, "dark", browsertest.Get(page, chromedp.Evaluate[string](`document.documentElement.dataset.theme`)))
	assert.Equal(t, "true", browsertest.Get(page, chromedp.Evaluate[string](`document.getElementById('theme').getAttribute('aria-pressed')`)))
	dark := browsertest.Get(page, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	assert.NotEqual(t, light, dark)
	assert.Equal(t, "rgb(18, 20, 24)", dark)
	page.Screenshot("dashboard-topology-dark")
	page.Do(press("2"), chromedp.WaitVisible(chromedp.CSS(".shardgrid")))
	page.Screenshot("dashboard-shards-dark")
}
