package analysis_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

// got is the part of an Analysis the table compares.
type got struct {
	Code     analysis.Code
	Instance string
	Recovery analysis.Recovery
}

const (
	none     = analysis.RecoveryNone
	alert    = analysis.RecoveryAlert
	failover = analysis.RecoveryFailover
	fence    = analysis.RecoveryFence
)

type analyzeCase struct {
	name string
	c    analysis.Cluster
	want []got
	// details: instance → substrings its first analysis' Detail must hold.
	details map[string][]string
}

func analyzeCases() []analyzeCase {
	return []analyzeCase{
		{name: "healthy cluster", c: healthy()},
		{name: "replica observed ahead of the master with the master's GTIDs is healthy",
			c: with(healthy(), "r1", received("0-1-103"), applied("0-1-103"))},
		{name: "lag check off when MaxLag is zero",
			c: func() analysis.Cluster { c := with(healthy(), "r1", lag(1000)); c.MaxLag = 0; return c }()},

		{name: "second writable instance is fenced",
			c:    with(healthy(), "r2", writableOpt),
			want: []got{{analysis.TwoWritableMasters, "r2", fence}}},
		{name: "two writable instances without a master record are only alerted on",
			c:    with(cluster("", master("m1", "0-1-100"), replica("r1", "m1", "0-1-100")), "r1", writableOpt),
			want: []got{{analysis.TwoWritableMasters, "m1", alert}, {analysis.TwoWritableMasters, "r1", alert}, {analysis.NoMasterRecord, "", alert}}},
		{name: "old master back writable while the new master is read-only",
			c: cluster("m2", master("m1", "0-1-100", func(in *analysis.Instance) { in.Status.Role = "UNKNOWN" }),
				master("m2", "0-1-100", readOnly), replica("r1", "m2", "0-1-100"), replica("r2", "m2", "0-1-100")),
			want:    []got{{analysis.WritableReplica, "m1", fence}},
			details: map[string][]string{"m1": {"m2 is read-only"}}},
		{name: "writable stray while the master is dead: fence it and fail over",
			c:    plus(deadMaster(), orphan("x", "0-1-90", writableOpt)),
			want: []got{{analysis.WritableReplica, "x", fence}, {analysis.DeadMaster, "m1", failover}}},
		{name: "two writable strays while the master is dead: one fence each, then fail over",
			c: plus(deadMaster(), orphan("x", "0-1-90", writableOpt), orphan("y", "0-1-90", writableOpt)),
			want: []got{{analysis.TwoWritableMasters, "x", fence}, {analysis.TwoWritableMasters, "y", fence},
				{analysis.DeadMaster, "m1", failover}}},

		{name: "dead master fails over to the most advanced replica",
			c:       with(with(with(healthy(), "m1", down), "r1", lost("Connecting")), "r2", lost("No"), received("0-1-101")),
			want:    []got{{analysis.DeadMaster, "m1", failover}},
			details: map[string][]string{"m1": {"every replica lost it: r1, r2", "best candidate r2 at 0-1-101"}}},
		{name: "dead master and some replicas",
			c:       with(with(with(healthy(), "m1", down), "r1", down), "r2", lost("Connecting")),
			want:    []got{{analysis.DeadMasterAndSomeReplicas, "m1", failover}},
			details: map[string][]string{"m1": {"unreachable replicas: r1", "best candidate r2"}}},
		{name: "dead master without an eligible replica is only alerted on",
			c:       with(with(with(healthy(), "m1", down), "r1", lost("Connecting"), noMaster), "r2", lost("Connecting"), sqlErr(1062)),
			want:    []got{{analysis.DeadMasterNoEligibleReplica, "m1", alert}},
			details: map[string][]string{"m1": {"r1: marked no-master", "r2: SQL thread error 1062"}}},
		{name: "holistic: one replica still receives from the unreachable master, no failover",
			c:       with(with(healthy(), "m1", down), "r2", lost("Connecting")),
			want:    []got{{analysis.UnreachableMasterReplicasOK, "m1", none}},
			details: map[string][]string{"m1": {"still receive from it: r1"}}},
		{name: "unreachable master with every replica unreachable",
			c:    with(with(with(healthy(), "m1", down), "r1", down), "r2", down),
			want: []got{{analysis.UnreachableMasterNoEvidence, "m1", alert}}},
		{name: "unreachable master with only an orphan to ask",
			c:    cluster("m1", master("m1", "0-1-100", down), orphan("x", "0-1-100")),
			want: []got{{analysis.UnreachableMasterNoEvidence, "m1", alert}}},
		{name: "master record names an unknown instance",
			c:    func() analysis.Cluster { c := healthy(); c.Master = "ghost"; return c }(),
			want: []got{{analysis.UnknownMaster, "ghost", alert}}},

		{name: "no master record: the single writable instance is adopted",
			c:    func() analysis.Cluster { c := healthy(); c.Master = ""; return c }(),
			want: []got{{analysis.NoMasterRecord, "m1", analysis.RecoveryAdopt}}},
		{name: "no master record and nothing writable",
			c:    func() analysis.Cluster { c := with(healthy(), "m1", readOnly); c.Master = ""; return c }(),
			want: []got{{analysis.NoMasterRecord, "", alert}}},
		{name: "master restarted read-only is unfenced",
			c:    with(healthy(), "m1", readOnly),
			want: []got{{analysis.NoWritableMaster, "m1", analysis.RecoveryUnfence}}},

		{name: "replica with a transaction of its own is quarantined, not restarted",
			c:       with(healthy(), "r2", applied("0-1-100,1-3-5"), lost("No")),
			want:    []got{{analysis.ErrantGTID, "r2", analysis.RecoveryQuarantine}},
			details: map[string][]string{"r2": {"errant GTIDs 1-3-5"}}},
		{name: "replica with its own write at the master's sequence number is quarantined",
			c:    with(healthy(), "r1", applied("0-2-100")),
			want: []got{{analysis.ErrantGTID, "r1", analysis.RecoveryQuarantine}}},
		{name: "replica read after a new master's first write is not errant",
			// m2 was promoted: its last GTID still carries the old master's
			// server id 1; r1, read after m2's first write, has it with id 2.
			c: cluster("m2", master("m2", "0-1-100", serverID(2)),
				replica("r1", "m2", "0-2-101"), replica("r2", "m2", "0-1-100")),
			want: nil},
		{name: "a replica's write carrying another server id is errant even when ahead",
			c: cluster("m2", master("m2", "0-1-100", serverID(2)),
				replica("r1", "m2", "0-3-101"), replica("r2", "m2", "0-1-100")),
			want: []got{{analysis.ErrantGTID, "r1", analysis.RecoveryQuarantine}}},
		{name: "old master returning with un-replicated transactions is quarantined, not rejoined",
			c: cluster("m2", orphan("m1", "0-1-105"), master("m2", "0-1-100"),
				replica("r1", "m2", "0-1-100"), replica("r2", "m2", "0-1-100")),
			want:    []got{{analysis.ErrantGTID, "m1", analysis.RecoveryQuarantine}},
			details: map[string][]string{"m1": {"errant GTIDs 0-1-105"}}},

		{name: "replication broken by an SQL error",
			c:    with(healthy(), "r1", sqlErr(1062)),
			want: []got{{analysis.ReplicationBroken, "r1", alert}}},
		{name: "IO thread gave up on an error",
			c:       with(healthy(), "r1", ioErr(1236)),
			want:    []got{{analysis.ReplicationBroken, "r1", alert}},
			details: map[string][]string{"r1": {"errno 1236"}}},
		{name: "replica of another source is repointed",
			c:    with(healthy(), "r2", source("x")),
			want: []got{{analysis.ReplicaWrongSource, "r2", analysis.RecoveryRepoint}}},
		{name: "read-only orphan is rejoined",
			c:    plus(healthy(), orphan("x", "0-1-100")),
			want: []got{{analysis.OrphanInstance, "x", analysis.RecoveryRejoin}}},
		{name: "a replica whose replica status could not be read is not an orphan",
			c: plus(healthy(), orphan("x", "0-1-100", func(in *analysis.Instance) {
				in.Status.LastError = "SHOW SLAVE STATUS: context deadline exceeded"
			})),
			want: nil},
		{name: "stopped threads without an error are restarted",
			c: with(with(healthy(), "r1", lost("No")), "r2", sqlStopped),
			want: []got{{analysis.ReplicationStopped, "r1", analysis.RecoveryRestartReplication},
				{analysis.ReplicationStopped, "r2", analysis.RecoveryRestartReplication}}},
		{name: "semi-sync master without semi-sync replicas",
			c:    with(healthy(), "m1", semiClients(0)),
			want: []got{{analysis.SemiSyncNoReplicas, "m1", alert}}},
		{name: "dead replica",
			c:    with(healthy(), "r2", down),
			want: []got{{analysis.DeadReplica, "r2", alert}}},
		{name: "lagging replica",
			c:       with(healthy(), "r1", lag(120)),
			want:    []got{{analysis.LaggingReplica, "r1", alert}},
			details: map[string][]string{"r1": {"120s behind"}}},
		{name: "quarantined instance yields only its alert",
			c:    with(healthy(), "r2", quarantine, applied("0-1-100,1-3-5"), lost("No"), lag(500)),
			want: []got{{analysis.Quarantined, "r2", alert}}},
		{name: "quarantined unreachable instance is no dead replica",
			c:    with(healthy(), "r2", quarantine, down),
			want: []got{{analysis.Quarantined, "r2", alert}}},
		{name: "several problems, most urgent first",
			c: plus(with(with(with(healthy(), "m1", semiClients(0)), "r1", lag(120)), "r2", down), orphan("x", "0-1-100")),
			want: []got{{analysis.OrphanInstance, "x", analysis.RecoveryRejoin}, {analysis.SemiSyncNoReplicas, "m1", alert},
				{analysis.DeadReplica, "r2", alert}, {analysis.LaggingReplica, "r1", alert}}},
	}
}

func TestAnalyze(t *testing.T) {
	covered := map[analysis.Code]bool{}
	for _, tc := range analyzeCases() {
		t.Run(tc.name, func(t *testing.T) {
			res := analysis.Analyze(tc.c)
			require.NotNil(t, res, "Analyze returns an empty slice, not nil")
			gots := make([]got, len(res))
			for i, a := range res {
				gots[i] = got{a.Code, a.Instance, a.Recovery}
				covered[a.Code] = true
				assert.NotEmpty(t, a.Description)
				assert.NotEmpty(t, a.Detail, "%s on %q", a.Code, a.Instance)
			}
			want := tc.want
			if want == nil {
				want = []got{}
			}
			require.Equal(t, want, gots)
			for inst, subs := range tc.details {
				var detail string
				for _, a := range res {
					if a.Instance == inst {
						detail = a.Detail
						break
					}
				}
				for _, s := range subs {
					assert.Contains(t, detail, s, "detail of %s", inst)
				}
			}
		})
	}
	for _, p := range analysis.Problems() {
		assert.True(t, covered[p.Code], "no test case yields %s", p.Code)
	}
}

func TestAnalyzeSortedAndPrioritized(t *testing.T) {
	res := analysis.Analyze(plus(with(with(with(healthy(), "m1", semiClients(0)), "r1", lag(120)), "r2", down),
		orphan("x", "0-1-100"), orphan("y", "0-1-100")))
	require.Len(t, res, 5)
	prio := map[analysis.Code]int{}
	for _, p := range analysis.Problems() {
		prio[p.Code] = p.Priority
	}
	for i, a := range res {
		assert.Equal(t, prio[a.Code], a.Priority, a.Code)
		if i > 0 {
			prev := res[i-1]
			ordered := prev.Priority > a.Priority ||
				(prev.Priority == a.Priority && (prev.Code < a.Code || (prev.Code == a.Code && prev.Instance < a.Instance)))
			assert.True(t, ordered, "%v before %v", prev, a)
		}
	}
}

func TestHolisticNoFailover(t *testing.T) {
	// The agent lost the master, one replica lost it too, the other still
	// receives from it: the master is alive, whatever the agent sees.
	c := with(with(healthy(), "m1", down), "r2", lost("Connecting"))
	for _, a := range analysis.Analyze(c) {
		assert.NotEqual(t, analysis.RecoveryFailover, a.Recovery, "%s", a.Code)
	}
	for _, p := range analysis.Problems() {
		switch p.Code {
		case analysis.UnreachableMasterReplicasOK:
			assert.Equal(t, []string{"m1"}, p.Match(c))
		default:
			assert.Nil(t, p.Match(c), "%s matched", p.Code)
		}
	}
	// Once r1 loses it too, the master is dead.
	dead := with(c, "r1", lost("Connecting"))
	res := analysis.Analyze(dead)
	require.Len(t, res, 1)
	assert.Equal(t, analysis.DeadMaster, res[0].Code)
	assert.Equal(t, "m1", res[0].Instance)
}

func TestProblemsTable(t *testing.T) {
	rows := analysis.Problems()
	require.NotEmpty(t, rows)
	codes := map[analysis.Code]bool{}
	for i, p := range rows {
		assert.False(t, codes[p.Code], "code %s twice", p.Code)
		codes[p.Code] = true
		if i > 0 {
			assert.Greater(t, rows[i-1].Priority, p.Priority, "%s must be less urgent than %s", p.Code, rows[i-1].Code)
		}
		assert.NotEmpty(t, p.Recovery, p.Code)
		assert.NotNil(t, p.Match, p.Code)
		assert.True(t, strings.HasSuffix(p.Description, "."), "%s: description ends with a period", p.Code)
		assert.NotContains(t, p.Description, "|", "%s: description must fit a markdown table", p.Code)
		assert.Nil(t, p.Match(healthy()), "%s matches a healthy cluster", p.Code)
	}

	// A fresh copy every time.
	rows[0].Code, rows[0].Priority = "Changed", -1
	again := analysis.Problems()
	assert.Equal(t, analysis.TwoWritableMasters, again[0].Code)
	assert.Equal(t, 1000, again[0].Priority)
}

func TestLagBoundary(t *testing.T) {
	c := with(healthy(), "r1", lag(30))
	c.MaxLag = 30 * time.Second
	assert.Empty(t, analysis.Analyze(c), "at the limit is not lagging")
	c = with(c, "r1", lag(31))
	res := analysis.Analyze(c)
	require.Len(t, res, 1)
	assert.Equal(t, analysis.LaggingReplica, res[0].Code)
}
