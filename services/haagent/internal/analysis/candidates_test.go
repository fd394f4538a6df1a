package analysis_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

func TestCandidates(t *testing.T) {
	// m1 died; the agent last saw it at 0-1-100,1-1-50.
	const at = "0-1-100,1-1-50"
	c := cluster("m1",
		master("m1", at, down),
		// a: no IO position, so its current position counts.
		replica("a", "m1", at, lost("Connecting"), received("")),
		// b: ahead of every other in domain 0.
		replica("b", "m1", at, lost("Connecting"), received("0-1-101,1-1-50")),
		// c: as far as a, higher priority.
		replica("c", "m1", at, lost("Connecting"), prio(5)),
		// d: incomparable with b, larger sum; ahead of the master's last
		// observation with the master's own GTIDs, which is not errant.
		replica("d", "m1", at, lost("Connecting"), received("0-1-99,1-1-60"), applied("0-1-99,1-1-60")),
		// e: as far as a, same priority, later name.
		replica("e", "m1", at, lost("Connecting")),
		replica("nomaster", "m1", "0-1-200,1-1-50", lost("Connecting"), noMaster),
		replica("lagging", "m1", at, lag(600)),
		replica("sqlerr", "m1", at, lost("Connecting"), sqlErr(1032)),
		replica("quar", "m1", "0-1-300,1-1-50", lost("Connecting"), quarantine),
		replica("errant", "m1", at, lost("Connecting"), applied("0-1-100,1-7-51")),
		replica("gone", "m1", at, down),
		orphan("notrep", at),
	)
	ok, excluded := analysis.Candidates(c)
	order := make([]string, len(ok))
	for i, cand := range ok {
		order[i] = cand.Instance.Name
	}
	assert.Equal(t, []string{"d", "b", "c", "a", "e"}, order)
	assert.Equal(t, "0-1-99,1-1-60", ok[0].Pos.String())
	assert.Equal(t, "0-1-101,1-1-50", ok[1].Pos.String())
	assert.Equal(t, at, ok[3].Pos.String(), "a falls back to its current position")

	wantWhy := map[string]string{
		"m1":       "recorded master",
		"nomaster": "no-master",
		"lagging":  "lagging 600s",
		"sqlerr":   "SQL thread error 1032",
		"quar":     "quarantined",
		"errant":   "errant GTIDs 1-7-51",
		"gone":     "unreachable",
		"notrep":   "not a replica",
	}
	require.Len(t, excluded, len(wantWhy))
	for name, why := range wantWhy {
		assert.Contains(t, excluded[name], why, name)
	}
}

// TestCandidatesMostAdvancedLagging: the replica that received the most
// is a candidate (and the best) however far its SQL thread lags; a lagging
// replica that received no more than a fresh one is left out.
func TestCandidatesMostAdvancedLagging(t *testing.T) {
	c := cluster("m1", master("m1", "0-1-100", down),
		replica("fresh", "m1", "0-1-90", lost("Connecting")),
		replica("behind", "m1", "0-1-80", lost("Connecting"), received("0-1-100"), lag(600)),
		replica("slow", "m1", "0-1-80", lost("Connecting"), received("0-1-85"), lag(600)))
	ok, excluded := analysis.Candidates(c)
	require.Len(t, ok, 2, "excluded: %v", excluded)
	assert.Equal(t, "behind", ok[0].Instance.Name, "the most advanced is promoted, after its relay log")
	assert.Equal(t, "fresh", ok[1].Instance.Name)
	assert.Contains(t, excluded["slow"], "lagging 600s")
	assert.Contains(t, excluded["slow"], "fresh has received all it has")
}

func TestCandidatesGTIDBeforePriority(t *testing.T) {
	c := cluster("m1", master("m1", "0-1-100", down),
		replica("low", "m1", "0-1-100", lost("Connecting"), received("0-1-102")),
		replica("high", "m1", "0-1-100", lost("Connecting"), received("0-1-101"), prio(100)))
	ok, _ := analysis.Candidates(c)
	require.Len(t, ok, 2)
	assert.Equal(t, "low", ok[0].Instance.Name, "the most advanced wins over priority")

	c = with(c, "low", received("0-1-101"))
	ok, _ = analysis.Candidates(c)
	require.Len(t, ok, 2)
	assert.Equal(t, "high", ok[0].Instance.Name, "priority decides among equals")
}

func TestCandidatesMasterPositionUnknown(t *testing.T) {
	// Nothing is known of the master's position: no errant check, and the
	// replica with a GTID of another server still ranks by position.
	c := cluster("m1", master("m1", "", down),
		replica("r1", "m1", "0-1-100", lost("Connecting")),
		replica("r2", "m1", "0-1-100,1-7-3", lost("Connecting")))
	ok, excluded := analysis.Candidates(c)
	require.Len(t, ok, 2)
	assert.Equal(t, "r2", ok[0].Instance.Name)
	assert.Equal(t, map[string]string{"m1": "is the recorded master"}, excluded)
}

func TestCandidatesNotFromMaster(t *testing.T) {
	// A replica of some other source gets no allowance for GTIDs past the
	// master's with the master's server id.
	c := cluster("m1", master("m1", "0-1-100", down),
		replica("r1", "m1", "0-1-103", lost("Connecting")),
		replica("r2", "x", "0-1-103", lost("Connecting")))
	ok, excluded := analysis.Candidates(c)
	require.Len(t, ok, 1)
	assert.Equal(t, "r1", ok[0].Instance.Name)
	assert.Contains(t, excluded["r2"], "errant GTIDs 0-1-103")
}
