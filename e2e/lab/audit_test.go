package lab

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/stretchr/testify/require"
)

// auditEvent is the part of an event of `drctl audit search -o json` the
// test reads.
type auditEvent struct {
	ID      string            `json:"id"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Target  string            `json:"target"`
	Outcome string            `json:"outcome"`
	Params  map[string]string `json:"params"`
}

// requireSwitchoverAudited polls `drctl audit search switchover --since 1h`
// (indexing is asynchronous) until it finds the switchover request made
// through the API and the HA agent's switchover.run event for target.
func requireSwitchoverAudited(t *testing.T, bin, labJSON, target string) {
	t.Helper()
	var last string
	var request, run *auditEvent
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		stdout, stderr, code := drctl(t, bin, labJSON, "audit", "search", "switchover", "--since", "1h", "-o", "json")
		if code != 0 {
			last = stderr
			return check.That(false, "switchover events never found; last answer:\n%s", last)
		}
		last = stdout
		var resp struct {
			Events []auditEvent `json:"events"`
			Total  string       `json:"total"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &resp), stdout)
		request, run = nil, nil
		for i, e := range resp.Events {
			if e.Target != target {
				continue
			}
			switch e.Action {
			case "switchover.request":
				request = &resp.Events[i]
			case "switchover.run":
				run = &resp.Events[i]
			}
		}
		return check.That(request != nil && run != nil, "switchover events never found; last answer:\n%s", last)
	})
	require.Equal(t, "token:lab-admin", request.Actor)
	require.Equal(t, "OK", request.Outcome)
	require.Regexp(t, `^haagent:`, run.Actor)
	require.Equal(t, "OK", run.Outcome)
	require.NotEmpty(t, run.Params["new_master"])
	require.NotEmpty(t, run.Params["old_master"])
}
