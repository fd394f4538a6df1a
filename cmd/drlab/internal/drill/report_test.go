package drill

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReportTable(t *testing.T) {
	r := &Report{Started: t0, Finished: t0.Add(time.Minute), Steps: []string{"kill", "evacuate"}, Repeat: 1, Rate: 100,
		Events: []Event{
			{Step: "kill", Kind: "kill", Round: 1, Available: true, Target: "dc-a1/main master dc-a1-db1",
				Outage: Outage{Recovered: true, RTO: 412 * time.Millisecond, Block: 380 * time.Millisecond, Failed: 9},
				Shard:  &ShardOutages{Block: Stats{N: 3, P50: 300 * time.Millisecond, Max: 733 * time.Millisecond}},
				Record: &SystemRecord{Outcome: "SUCCEEDED", RTO: 250 * time.Millisecond, RPO: 0, Rewound: 1}},
			{Step: "evacuate", Kind: "evacuate", Round: 1, Reason: "the coordinator does not implement evacuation yet"},
		},
		Writes: Writes{Attempted: 100, Acked: 91, Failed: 9, Errors: map[string]int{"connection_refused": 9}},
		Checks: []CheckResult{
			{Name: NameLost, After: "kill#1", Outcome: Pass, Detail: "91 acknowledged writes present in all 3 DCs"},
			{Name: NameTwoWritable, After: "run", Outcome: Fail, Detail: "dc-a1/main at 03:04:05.000: writable db1, db2"},
		},
	}
	r.Summary = Summarize(r.Events)
	r.Passed = Verdict(r.Checks)
	var b bytes.Buffer
	require.NoError(t, r.Table(&b))
	out := b.String()
	assert.Contains(t, out, "evacuate#1")
	assert.Contains(t, out, "not available: the coordinator does not implement evacuation yet")
	assert.NotContains(t, out, "evacuate    1", "an unavailable step is not in the summary")
	assert.Contains(t, out, "412ms")
	assert.Contains(t, out, "733ms", "the event's worst shard")
	assert.Contains(t, out, "0 (+1 shipped, rewound; 0 acknowledged)", "the requests the other DCs applied and the event's DC lost")
	assert.Contains(t, out, "connection_refused  9")
	assert.Contains(t, out, "FAIL    after run: dc-a1/main at 03:04:05.000: writable db1, db2")
	assert.Contains(t, out, "FAIL: see the checks above")

	var j bytes.Buffer
	require.NoError(t, r.JSON(&j))
	var back Report
	require.NoError(t, json.Unmarshal(j.Bytes(), &back))
	assert.False(t, back.Passed)
	assert.False(t, back.Events[1].Available)
}
