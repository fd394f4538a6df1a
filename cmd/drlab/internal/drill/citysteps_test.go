package drill

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func named(w Write, gtid string) Write { w.GTID = gtid; return w }

// A DC loss: dc-b1 owned shards 0 and 1, killed at 1000 ms, flipped at
// 1500 ms, shard 0 to dc-a1 and shard 1 to dc-a2.
func cityLoss() *CityLoss {
	return &CityLoss{DC: "dc-b1", FailoverID: "cf-1", Killed: at(1000), Flipped: at(1500),
		Owners:  map[int]string{0: "dc-a1", 1: "dc-a2"},
		Windows: map[int]time.Duration{0: 100 * time.Millisecond, 1: -1},
		System:  map[string]*systemLoss{}, Reports: map[string]LossByRequest{}}
}

func TestCompareLossEstimate(t *testing.T) {
	l := cityLoss()
	w1 := named(acked(1, 0, "b1", 900, 950), "3-1-10")  // in shard 0's window (900 ms on)
	w2 := named(acked(2, 0, "b1", 700, 750), "3-1-11")  // before the window, named by the estimate
	w3 := named(acked(3, 1, "b1", 800, 850), "3-1-12")  // shard 1: unknown window, not named
	w4 := named(acked(4, 1, "a2", 1600, 1700), "2-1-5") // after the flip: not the failover's
	present := map[string]map[int64]bool{"dc-a1": {4: true}, "dc-a2": {4: true}}
	l.System["estimate"] = &systemLoss{ids: map[string]bool{"3-1-11/0": true}, total: 1}
	r := compareLoss(l, "dc-loss#1", []Write{w1, w2, w3, w4}, present)
	assert.Equal(t, Fail, r.Outcome, "write 3 is lost and not reported")
	assert.Contains(t, r.Detail, "write 3 (3-1-12/1, shard 1) is missing at dc-a2; the estimate does not name it")
	rep := l.Reports["estimate"]
	assert.Equal(t, 1, rep.Matched)
	assert.Equal(t, 1, rep.InWindow)
	assert.Equal(t, []string{"3-1-12/1"}, rep.DrillOnly)
	assert.Equal(t, map[int64]bool{1: true, 2: true}, l.Excused)
	assert.ElementsMatch(t, []string{"3-1-10/0", "3-1-11/0", "3-1-12/1"}, l.Drill)

	// Reported as well: the check passes.
	l.System["estimate"].ids["3-1-12/1"] = true
	r = compareLoss(l, "dc-loss#1", []Write{w1, w2, w3, w4}, present)
	assert.Equal(t, Pass, r.Outcome, r.Detail)
}

func TestCompareLossExact(t *testing.T) {
	l := cityLoss()
	w1 := named(acked(1, 0, "b1", 900, 950), "3-1-10")
	w2 := named(acked(2, 1, "b1", 800, 850), "3-1-12")
	present := map[string]map[int64]bool{"dc-a1": {}, "dc-a2": {2: true}, "dc-b1": {1: true, 2: true}}
	// The exact loss names write 1, lost, and write 2, which dc-a2 holds.
	l.System["exact"] = &systemLoss{ids: map[string]bool{"3-1-10/0": true, "3-1-12/1": true}, total: 2}
	r := compareLoss(l, "dc-return#1", []Write{w1, w2}, present)
	assert.Equal(t, Fail, r.Outcome)
	assert.Contains(t, r.Detail, "the exact loss names 3-1-12/1, which dc-a2 holds")

	// An exact loss that misses a lost write fails; the window does not
	// excuse anything any more.
	l.System["exact"] = &systemLoss{ids: map[string]bool{}, total: 0}
	present["dc-a2"] = map[int64]bool{}
	r = compareLoss(l, "dc-return#1", []Write{w1, w2}, present)
	assert.Equal(t, Fail, r.Outcome)
	assert.Empty(t, l.Excused)

	l.System["exact"] = &systemLoss{ids: map[string]bool{"3-1-10/0": true, "3-1-12/1": true}, total: 2}
	r = compareLoss(l, "dc-return#1", []Write{w1, w2}, present)
	assert.Equal(t, Pass, r.Outcome, r.Detail)
	assert.Equal(t, 2, l.Reports["exact"].Matched)
}

func TestCompareLossUnnamed(t *testing.T) {
	l := cityLoss()
	l.System["exact"] = &systemLoss{ids: map[string]bool{}, total: 0}
	r := compareLoss(l, "dc-return#1", []Write{acked(1, 0, "b1", 900, 950)}, map[string]map[int64]bool{"dc-a1": {}})
	assert.Equal(t, Fail, r.Outcome)
	assert.Contains(t, r.Detail, "has no request id to match")
	assert.Equal(t, 1, l.Unnamed)
}

// A write whose GTID the writer could not read (the DC died right after
// the commit): the estimate matches it against a request of its shard that
// no named write accounts for, and only while there is one; the exact loss
// must name it, through the divergence entry that holds its row.
func TestCompareLossWithoutGTID(t *testing.T) {
	l := cityLoss()
	w1 := acked(1, 1, "b1", 800, 850)                  // no GTID, lost
	w2 := named(acked(2, 1, "b1", 700, 750), "3-1-11") // named, lost
	present := map[string]map[int64]bool{"dc-a2": {}}
	l.System["estimate"] = &systemLoss{ids: map[string]bool{"3-1-11/1": true, "3-1-12/1": true}, total: 2}
	r := compareLoss(l, "dc-loss#1", []Write{w1, w2}, present)
	assert.Equal(t, Pass, r.Outcome, r.Detail)
	assert.Equal(t, 1, l.Reports["estimate"].ByShard)
	assert.Equal(t, 1, l.Reports["estimate"].Matched)
	assert.Equal(t, map[int64]bool{1: true, 2: true}, l.Excused)

	// No spare request of shard 1: the unnamed write fails.
	l.System["estimate"] = &systemLoss{ids: map[string]bool{"3-1-11/1": true, "3-1-12/0": true}, total: 2}
	r = compareLoss(l, "dc-loss#1", []Write{w1, w2}, present)
	assert.Equal(t, Fail, r.Outcome)
	assert.Contains(t, r.Detail, "write 1 (shard 1) is missing at dc-a2 and has no request id to match")

	// The exact loss: unnamed until its divergence entry names it.
	l.System["exact"] = &systemLoss{ids: map[string]bool{"3-1-11/1": true, "3-1-12/1": true}, total: 2}
	r = compareLoss(l, "dc-return#1", []Write{w1, w2}, present)
	assert.Equal(t, Fail, r.Outcome, "the exact loss does not match by shard")
	l.Resolved = map[int64]string{1: "3-1-12/1"}
	r = compareLoss(l, "dc-return#1", []Write{w1, w2}, present)
	assert.Equal(t, Pass, r.Outcome, r.Detail)
	assert.Equal(t, 2, l.Reports["exact"].Matched)
	assert.ElementsMatch(t, []string{"3-1-11/1", "3-1-12/1"}, l.Drill)
}

func TestRowIDs(t *testing.T) {
	ch := &drplanev1.ChangeEvent{Rows: []*drplanev1.RowChange{
		{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 7}}}}},
		{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 8}}}}},
		{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 9}}}}},
	}}
	assert.Equal(t, []int64{7, 9}, rowIDs(ch), "inserted rows only: the counter row's update is not a drill write")
}

func TestDivergent(t *testing.T) {
	l := cityLoss()
	writes := []Write{
		acked(1, 0, "b1", 900, 950),       // dc-b1 has it, dc-a1 (new owner) does not
		{ID: 2, Shard: 0, Start: at(990)}, // never acknowledged, committed in dc-b1 and dc-a2 only
		acked(3, 0, "a1", 1600, 1650),     // after the flip: a real loss if missing, never left out
		acked(4, 1, "b1", 900, 950),       // at its owner dc-a2 too
		acked(5, 2, "a1", 900, 950),       // shard 2 was not the lost DC's
	}
	present := map[string]map[int64]bool{
		"dc-a1": {4: true}, "dc-a2": {2: true, 4: true}, "dc-b1": {1: true, 2: true, 3: true, 4: true, 5: true},
	}
	out := map[int64]bool{}
	divergent(l, present, writes, out)
	require.Equal(t, map[int64]bool{1: true, 2: true}, out)
}

func TestExcludedClause(t *testing.T) {
	m := &MySQL{}
	assert.Empty(t, m.excluded("WHERE"))
	m.exclude = map[int64]bool{7: true}
	assert.Equal(t, " AND id NOT IN (7)", m.excluded("AND"))
}

// The fence check counts the returned DC's writes to its lost shards from
// the flip on: a write its master acknowledged while the kill was still
// taking the DC's processes down is the failover's loss to count, not a
// broken fence.
func TestWrittenAfterFlip(t *testing.T) {
	l := cityLoss() // killed at 1000 ms, flipped at 1500 ms
	dcOf := map[string]string{"b1": "dc-b1", "a1": "dc-a1"}
	writes := []Write{
		acked(1, 0, "b1", 1000, 1100), // during the kill: not a violation
		acked(2, 1, "b1", 1600, 1650), // after the flip, at the old owner
		acked(3, 0, "a1", 1600, 1650), // after the flip, at the new owner
		acked(4, 5, "b1", 1600, 1650), // a shard the DC did not lose
	}
	bad := writtenAfterFlip(l, writes, dcOf, "dc-b1")
	require.Len(t, bad, 1, bad)
	assert.Contains(t, bad[0], "write 2 to shard 1 acknowledged by b1")
}

// What one DC loss accounted for stays accounted for: while the shard's
// new owner is down again, and when a later loss flips the shard again.
func TestCompareLossKeepsWhatItAccountedFor(t *testing.T) {
	l := cityLoss()
	w1 := named(acked(1, 0, "b1", 900, 950), "3-1-10")
	l.System["exact"] = &systemLoss{ids: map[string]bool{"3-1-10/0": true}, total: 1}
	r := compareLoss(l, "dc-return#1", []Write{w1}, map[string]map[int64]bool{"dc-a1": {}, "dc-b1": {1: true}})
	require.Equal(t, Pass, r.Outcome, r.Detail)
	require.True(t, l.Excused[1])
	// dc-a1, the new owner, is down in a later step.
	compareLoss(l, "dc-loss#2", []Write{w1}, map[string]map[int64]bool{"dc-b1": {1: true}})
	assert.True(t, l.Excused[1], "excused while its new owner is down")
	l.Rows = map[int64]bool{1: true}
	out := map[int64]bool{}
	divergent(l, map[string]map[int64]bool{"dc-b1": {1: true}}, []Write{w1}, out)
	assert.True(t, out[1], "its row stays left out")

	// A later loss of dc-a1 flips shard 0 back to dc-b1's city: write 1
	// is the first loss's, not this one's.
	later := &CityLoss{DC: "dc-a1", Killed: at(5000), Flipped: at(5500), Owners: map[int]string{0: "dc-a2"},
		Windows: map[int]time.Duration{0: -1}, System: map[string]*systemLoss{"estimate": {ids: map[string]bool{}}},
		Reports: map[string]LossByRequest{}, Earlier: map[int64]bool{1: true}}
	r = compareLoss(later, "dc-loss#3", []Write{w1}, map[string]map[int64]bool{"dc-a2": {}, "dc-b1": {1: true}})
	assert.Equal(t, Pass, r.Outcome, r.Detail)
	assert.Empty(t, later.Drill)
	later.Earlier = nil
	r = compareLoss(later, "dc-loss#3", []Write{w1}, map[string]map[int64]bool{"dc-a2": {}, "dc-b1": {1: true}})
	assert.Equal(t, Fail, r.Outcome, "without the earlier loss it counts as this one's")
}

// An unnamed write inside its shard's loss window is the estimate's.
func TestCompareLossUnnamedInWindow(t *testing.T) {
	l := cityLoss() // shard 0: 100 ms window before the kill at 1000 ms
	l.System["estimate"] = &systemLoss{ids: map[string]bool{}, total: 0}
	r := compareLoss(l, "dc-loss#1", []Write{acked(1, 0, "b1", 900, 950)}, map[string]map[int64]bool{"dc-a1": {}})
	assert.Equal(t, Pass, r.Outcome, r.Detail)
	assert.Equal(t, 1, l.Reports["estimate"].InWindow)
	r = compareLoss(l, "dc-loss#1", []Write{acked(1, 0, "b1", 800, 850)}, map[string]map[int64]bool{"dc-a1": {}})
	assert.Equal(t, Fail, r.Outcome, "before the window, not named")
}
