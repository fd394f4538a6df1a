package coordinator_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
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
	"github.com/drplane/drplane/services/coordinator/internal/guard"
)

// answerConfirm waits for the page's confirmation dialog, checks that its
// text contains want (unless want is empty), and answers it with the button
// whose id is button ("confirm-ok" or "confirm-cancel").
func answerConfirm(t *testing.T, op *browsertest.Tab, want, button string) {
	t.Helper()
	op.Do(chromedp.WaitVisible(chromedp.ID("confirm")))
	if want != "" {
		assert.Contains(t, op.Text("#confirm-text"), want)
	}
	op.Do(chromedp.Click(chromedp.ID(button)), chromedp.WaitNotVisible(chromedp.ID("confirm")))
}

// observe publishes HA-agent observations of one cluster "main" in dc:
// master is writable, the other instance replicates from it with lag.
func observe(t testing.TB, st *state.Store, dc, master string) {
	t.Helper()
	lag := int64(2)
	for _, n := range []string{"db1", "db2"} {
		name := dc + "-" + n
		o := state.InstanceStatus{DC: dc, Cluster: "main", Name: name, Addr: "127.0.0.1:3306", Reachable: true,
			GTIDCurrentPos: "0-1-42", ObservedAt: time.Now().UTC(), ObservedBy: dc + "-haagent"}
		if name == master {
			o.Role, o.SemiSyncMaster, o.SemiSyncClients = state.RoleMaster, true, 1
		} else {
			o.Role, o.ReadOnly, o.IORunning, o.SQLRunning, o.SecondsBehind = state.RoleReplica, true, true, true, &lag
		}
		require.NoError(t, st.PutInstanceStatus(context.Background(), o, 0))
	}
}

// TestDashboardServed: /ui serves the embedded page with a strict content
// security policy; the dashboard's data endpoints refuse a caller without
// a token as the REST API does.
func TestDashboardServed(t *testing.T) {
	_, cs := startCoords(t, 1)
	c := cs[0]
	resp, err := http.Get(c.base + "/ui")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `<script type="module" src="js/main.js">`)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	for _, p := range []string{"/ui/api/session", "/ui/api/events", "/ui/api/other"} {
		code, out := c.rest(t, http.MethodGet, p, "", "")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		assert.Contains(t, string(out), "UNAUTHENTICATED", p)
		code, _ = c.rest(t, http.MethodGet, p, "wrong-token", "")
		assert.Equal(t, http.StatusUnauthorized, code, p)
	}
	code, out := c.rest(t, http.MethodGet, "/ui/api/session", viewerToken, "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"name":"dashboard","role":"viewer"}`, string(out))

	// An event stream is one of the caller's watch streams: the one past
	// the limit is refused until another ends.
	open := func() *http.Response {
		req, err := http.NewRequest(http.MethodGet, c.base+"/ui/api/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+viewerToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	var streams []*http.Response
	for range guard.DefaultMaxWatches {
		resp := open()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "retry: 1000\n", line)
		streams = append(streams, resp)
	}
	over := open()
	body, _ = io.ReadAll(over.Body)
	over.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, over.StatusCode)
	assert.Contains(t, string(body), "RESOURCE_EXHAUSTED")
	streams[0].Body.Close()
	check.For(t, callTimeout, 10*time.Millisecond, func() error {
		resp := open()
		defer resp.Body.Close()
		return check.That(resp.StatusCode == http.StatusOK, "a stream is admitted again (got HTTP %d)", resp.StatusCode)
	})
	for _, s := range streams[1:] {
		s.Body.Close()
	}
}

// TestDashboardTopology logs in with a real browser, sees the three DCs with
// their masters, follows a change of master pushed by the event stream, and
// checks that a viewer's page has no operator action.
func TestDashboardTopology(t *testing.T) {
	b := browsertest.New(t)
	st, cs := startCoords(t, 1)
	c := cs[0]
	for _, dc := range []string{"dc-a1", "dc-a2", "dc-b1"} {
		observe(t, st, dc, dc+"-db1")
	}
	// dc-b1's replica is down: its cluster is DEGRADED and the error shows.
	require.NoError(t, st.PutInstanceStatus(context.Background(), state.InstanceStatus{DC: "dc-b1", Cluster: "main",
		Name: "dc-b1-db2", Addr: "127.0.0.1:3327", Role: state.RoleUnknown, LastError: "dial tcp 127.0.0.1:3327: connection refused",
		ObservedAt: time.Now().UTC(), ObservedBy: "dc-b1-haagent"}, 0))

	admin := b.Tab(t)
	admin.Login(c.base, adminToken)
	admin.Do(chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)))
	assert.Equal(t, 3, admin.Count("article.dc"), "three DCs")
	assert.Equal(t, 2, admin.Count("section.city"), "two cities")
	for _, dc := range []string{"dc-a1", "dc-a2", "dc-b1"} {
		master := admin.Text(fmt.Sprintf(`[data-cluster="%s/main"] .master`, dc))
		assert.Contains(t, master, dc+"-db1", dc)
		assert.Equal(t, "master", strings.TrimSpace(admin.Text(fmt.Sprintf(`tr[data-instance="%s-db1"] td .badge`, dc))))
	}
	assert.Equal(t, "DEGRADED", admin.Text(`[data-cluster="dc-b1/main"] h4 .badge`))
	assert.Equal(t, "OK", admin.Text(`[data-cluster="dc-a2/main"] h4 .badge`))
	assert.Equal(t, "unreachable", admin.Text(`tr[data-instance="dc-b1-db2"] .badge.bad`))
	assert.Contains(t, admin.Text(`[data-cluster="dc-b1/main"] .errrow`), "connection refused")
	assert.Contains(t, admin.Text("#who"), "ops-admin (admin)")
	assert.Equal(t, 3, admin.Count(`[data-action="switchover"]`), "an operator may switch over each cluster")

	// An operator action asks first; cancelling it calls nothing.
	admin.Click(`[data-cluster="dc-a1/main"] [data-action="switchover"]`)
	admin.Do(chromedp.WaitVisible(chromedp.ID("confirm")))
	assert.Contains(t, admin.Text("#confirm-text"), "dc-a1/main")
	admin.Do(chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm")))

	// dc-a1 fails over to db2: the agent's record and observations reach
	// the page through the event stream, without a reload.
	ctx := context.Background()
	rec, rev, err := st.Master(ctx, "dc-a1", "main")
	require.NoError(t, err)
	rec.Instance, rec.Term, rec.Reason = "dc-a1-db2", rec.Term+1, "test failover"
	_, err = st.PutMaster(ctx, rec, rev, nil)
	require.NoError(t, err)
	observe(t, st, "dc-a1", "dc-a1-db2")
	check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
		m := admin.Text(`[data-cluster="dc-a1/main"] .master`)
		return check.That(strings.Contains(m, "dc-a1-db2"), "the page shows master dc-a1-db2 (shows %q)", m)
	})
	assert.Equal(t, "master", strings.TrimSpace(admin.Text(`tr[data-instance="dc-a1-db2"] td .badge`)))
	admin.Screenshot("dashboard-topology-admin")

	viewer := b.Tab(t)
	viewer.Login(c.base, viewerToken)
	assert.Contains(t, viewer.Text("#who"), "dashboard (viewer)")
	assert.Equal(t, 3, viewer.Count("article.dc"))
	assert.Zero(t, viewer.Count("[data-action]"), "a viewer sees no operator action")
	viewer.Screenshot("dashboard-topology-viewer")

	// A wrong token is refused on the login form.
	other := b.Tab(t)
	other.Do(
		chromedp.Navigate(c.base+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "not-a-token"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	check.For(t, browsertest.StepTimeout, 20*time.Millisecond, func() error {
		e := other.Text("#login-error")
		return check.That(e == "Unknown token.", "login error %q", e)
	})
	assert.Zero(t, other.Count("#view:not([hidden])"), "no view without a session")
}
