package lab

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/browsertest"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/labfile"
)

// pageBound is how long after the HA agent's failover record the dashboard
// may show the new master (the acceptance: 2 s).
const pageBound = 2 * time.Second

// failoverRecord is the part of `drctl failovers -o json` the test reads.
type failoverRecord struct {
	DC         string    `json:"dc"`
	Cluster    string    `json:"cluster"`
	Analysis   string    `json:"analysis"`
	OldMaster  string    `json:"old_master"`
	NewMaster  string    `json:"new_master"`
	Outcome    string    `json:"outcome"`
	DetectedAt time.Time `json:"detected_at"`
	WritableAt time.Time `json:"writable_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// dashboardFollowsKill drives the dashboard of a running lab in headless
// chromium: an admin signs in and sees the three DCs with their masters;
// dc-a2's master is killed with SIGKILL from outside, and the topology
// view shows the master the HA agent promoted within pageBound of the
// agent's failover record, without a reload; a viewer sees the same DCs
// and no operator action. Screenshots go to $DRPLANE_ARTIFACTS (make test)
// or the test's temporary directory.
func dashboardFollowsKill(t *testing.T, bin, labJSON string) {
	const dc = "dc-a2"
	lab, err := labfile.Read(labJSON)
	require.NoError(t, err)
	require.NotEmpty(t, lab.API.ViewerToken, "the lab writes a viewer token")
	masters := labMasters(t, bin, labJSON)
	require.Len(t, masters, 3)

	b := browsertest.New(t)
	admin := b.Tab(t)
	admin.Login(lab.API.HTTP, lab.API.Token)
	admin.Do(chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)))
	assert.Equal(t, 3, admin.Count("article.dc"), "three DCs")
	assert.Equal(t, 2, admin.Count("section.city"), "two cities")
	// Every cluster OK with its master, as drctl status said. (Under a
	// heavy load the agents' observations can lapse for a moment and a
	// render show NO_MASTER: the page catches up with the next one.)
	for name, m := range masters {
		check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
			master, health := admin.Text(`[data-cluster="`+name+`"] .master`), admin.Text(`[data-cluster="`+name+`"] h4 .badge`)
			return check.That(master == " master "+m && health == "OK", "%s shows master %s, OK (shows %q, %s)", name, m, master, health)
		})
	}
	assert.Contains(t, admin.Text("#who"), "lab-admin (admin)")
	assert.Equal(t, 3, admin.Count(`[data-action="switchover"]`), "an admin may switch each cluster over")
	admin.Screenshot("lab-dashboard-before-kill")

	// kill -9 of dc-a2's master, as the drill does: no clean shutdown.
	cluster := ""
	for name := range masters {
		if strings.HasPrefix(name, dc+"/") {
			cluster = name
		}
	}
	require.NotEmpty(t, cluster)
	old := masters[cluster]
	pid := 0
	for _, d := range lab.DCs {
		for _, m := range d.MySQL {
			if m.Name == old {
				pid = m.Pid
			}
		}
	}
	require.NotZero(t, pid, "pid of %s in lab.json", old)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	killed := time.Now()
	t.Logf("killed %s (pid %d)", old, pid)

	// The page follows by itself; seen is when a poll first found the new
	// master on it.
	masterSel := `[data-cluster="` + cluster + `"] .master`
	var shown string
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		shown = strings.TrimSpace(admin.Text(masterSel))
		return check.That(shown != "" && shown != "master "+old && shown != "no master",
			"the page shows a new master of %s (shows %q)", cluster, shown)
	})
	seen := time.Now()
	rec := failoverOf(t, bin, labJSON, dc, old)
	assert.Equal(t, "master "+rec.NewMaster, shown, "the page shows the master the agent promoted")
	assert.Equal(t, "FAILOVER_OUTCOME_SUCCEEDED", rec.Outcome)
	t.Logf("kill → detected %v, → writable %v, → record finished %v, → page %v (page − record %v)",
		rec.DetectedAt.Sub(killed).Round(time.Millisecond), rec.WritableAt.Sub(killed).Round(time.Millisecond),
		rec.FinishedAt.Sub(killed).Round(time.Millisecond), seen.Sub(killed).Round(time.Millisecond),
		seen.Sub(rec.FinishedAt).Round(time.Millisecond))
	assert.LessOrEqual(t, seen.Sub(rec.FinishedAt), pageBound,
		"the page showed the new master %v after the agent's record finished", seen.Sub(rec.FinishedAt))
	admin.WaitFor("the killed master shows unreachable",
		`(document.querySelector('tr[data-instance="`+old+`"] .badge.bad') || {}).textContent === "unreachable"`)
	// The instances' rows follow the agent's next observation.
	admin.WaitFor("the new master's row shows role master",
		`((document.querySelector('tr[data-instance="`+rec.NewMaster+`"] td .badge') || {}).textContent || "").trim() === "master"`)
	admin.Screenshot("lab-dashboard-after-kill")

	// The failover history has the record.
	admin.Do(chromedp.Navigate(lab.API.HTTP+"/ui/#/failovers"), chromedp.WaitVisible(chromedp.CSS(".failovers table")))
	row := `tr[data-failover]`
	admin.WaitFor("the failover is listed", `[...document.querySelectorAll('`+row+`')].some((r) => r.textContent.includes("`+rec.NewMaster+`"))`)
	assert.Contains(t, browsertest.Eval[string](admin, `[...document.querySelectorAll('`+row+`')].find((r) => r.textContent.includes("`+rec.NewMaster+`")).textContent`),
		"DeadMaster", "the record's analysis")
	admin.Screenshot("lab-dashboard-failovers")

	// A viewer sees the DCs, and no operator action on any view.
	viewer := b.Tab(t)
	viewer.Login(lab.API.HTTP, lab.API.ViewerToken)
	assert.Contains(t, viewer.Text("#who"), "lab-viewer (viewer)")
	assert.Equal(t, 3, viewer.Count("article.dc"))
	viewer.WaitFor("the viewer sees the new master", `(document.querySelector('`+masterSel+`') || {}).textContent === " master `+rec.NewMaster+`"`)
	viewer.Screenshot("lab-dashboard-viewer")
	for _, view := range []string{"topology", "shards", "operations", "failovers", "audit"} {
		viewer.Do(chromedp.Navigate(lab.API.HTTP+"/ui/#/"+view), chromedp.WaitVisible(chromedp.CSS("#view ."+view)))
		assert.Zero(t, viewer.Count("[data-action]"), "a viewer sees no operator action on %s", view)
	}
}

// labMasters is every cluster's master ("dc/cluster" → instance) once drctl
// status shows each cluster OK.
func labMasters(t *testing.T, bin, labJSON string) map[string]string {
	t.Helper()
	masters := map[string]string{}
	check.For(t, 60*time.Second, 250*time.Millisecond, func() error {
		stdout, _, _ := drctl(t, bin, labJSON, "status", "-o", "json")
		var st status
		if err := json.Unmarshal([]byte(stdout), &st); err != nil {
			return fmt.Errorf("drctl status: %w: %s", err, stdout)
		}
		clear(masters)
		for _, d := range st.Dcs {
			for _, cl := range d.Clusters {
				if cl.Health != "OK" || cl.Master == "" {
					return check.That(false, "%s/%s is %s", d.Name, cl.Name, cl.Health)
				}
				masters[d.Name+"/"+cl.Name] = cl.Master
			}
		}
		return check.That(len(masters) == 3, "three clusters (%v)", masters)
	})
	return masters
}

// failoverOf is the finished failover record of dc that replaced old.
func failoverOf(t *testing.T, bin, labJSON, dc, old string) failoverRecord {
	t.Helper()
	var rec failoverRecord
	check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
		stdout, stderr, code := drctl(t, bin, labJSON, "failovers", "--dc", dc, "-o", "json")
		if code != 0 {
			return fmt.Errorf("drctl failovers: exit %d: %s", code, stderr)
		}
		var resp struct {
			Records []failoverRecord `json:"records"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &resp), stdout)
		for _, r := range resp.Records {
			if r.OldMaster == old && !r.FinishedAt.IsZero() {
				rec = r
				return nil
			}
		}
		return check.That(false, "a finished failover record of %s replacing %s (%d records)", dc, old, len(resp.Records))
	})
	return rec
}
