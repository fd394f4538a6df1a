package drill

import (
	"context"
	"database/sql/driver"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/router"
)

func TestMeasureOutage(t *testing.T) {
	var writes []Write
	// Shard 0 acknowledged every 20 ms until 100 ms, a kill at 110 ms,
	// refusals from 120 ms to 480 ms, acknowledged again from 500 ms.
	for ms := 0; ms <= 100; ms += 20 {
		writes = append(writes, acked(int64(ms), 0, "db1", ms, ms+5))
	}
	for ms := 120; ms < 500; ms += 20 {
		writes = append(writes, Write{ID: int64(ms), Shard: 0, Start: at(ms), Kind: "connection_refused"})
	}
	for ms := 500; ms <= 600; ms += 20 {
		writes = append(writes, acked(int64(ms), 0, "db2", ms, ms+5))
	}
	// Shard 1 is not affected and keeps being acknowledged.
	for ms := 0; ms <= 600; ms += 10 {
		writes = append(writes, acked(int64(10000+ms), 1, "x", ms, ms+1))
	}
	o := MeasureOutage(writes, []int{0}, at(110), at(520), "")
	assert.True(t, o.Recovered)
	assert.Equal(t, at(105), o.LastAck)
	assert.Equal(t, at(505), o.FirstAck)
	assert.Equal(t, 400*time.Millisecond, o.RTO)
	assert.Equal(t, 385*time.Millisecond, o.Block, "from the first refused write (120 ms) to the first ack after")
	assert.Equal(t, 19, o.Failed)

	// No acknowledgement after the event: not recovered.
	o = MeasureOutage(writes[:25], []int{0}, at(110), at(520), "db1")
	assert.False(t, o.Recovered)
	assert.Equal(t, at(105), o.LastAck)

	// A commit of the old master returning just after the fault (at 112
	// ms) is the last acknowledgement before the outage, not its end: the
	// outage ends with the new master's first one.
	tail := append([]Write{acked(99, 0, "db1", 100, 112)}, writes...)
	o = MeasureOutage(tail, []int{0}, at(110), at(520), "db1")
	assert.True(t, o.Recovered)
	assert.Equal(t, at(112), o.LastAck)
	assert.Equal(t, at(505), o.FirstAck)
	assert.Equal(t, 393*time.Millisecond, o.RTO)
	// Without naming the old master the longest gap gives the same here.
	assert.Equal(t, 393*time.Millisecond, MeasureOutage(tail, []int{0}, at(110), at(520), "").RTO)
}

// TestMeasureShards: two shards blocked one after the other (as in the
// waves of an evacuation) leave no common gap, but each shard's own block
// counts.
func TestMeasureShards(t *testing.T) {
	var writes []Write
	for ms := 0; ms <= 1000; ms += 20 {
		switch {
		case ms >= 200 && ms < 500: // shard 0 frozen
			writes = append(writes, Write{ID: int64(ms), Shard: 0, Start: at(ms), Kind: "shard_frozen"},
				acked(int64(5000+ms), 1, "x", ms, ms+2))
		case ms >= 500 && ms < 700: // then shard 1
			writes = append(writes, acked(int64(ms), 0, "x", ms, ms+2),
				Write{ID: int64(5000 + ms), Shard: 1, Start: at(ms), Kind: "shard_frozen"})
		default:
			writes = append(writes, acked(int64(ms), 0, "x", ms, ms+2), acked(int64(5000+ms), 1, "x", ms, ms+2))
		}
	}
	together := MeasureOutage(writes, []int{0, 1}, at(150), at(900), "")
	assert.Less(t, together.RTO, 50*time.Millisecond, "some shard was always acknowledged")

	s := MeasureShards(writes, []int{0, 1, 2}, at(150), at(900), "")
	require.NotNil(t, s)
	assert.Equal(t, 2, s.Block.N)
	assert.Equal(t, 302*time.Millisecond, s.Block.Max, "shard 0: refused from 200 ms, acknowledged at 502 ms")
	assert.Equal(t, 0, s.Worst)
	assert.Equal(t, 202*time.Millisecond, s.Block.P50, "shard 1: refused from 500 ms, acknowledged at 702 ms")
	assert.Equal(t, []int{2}, s.Unrecovered, "shard 2 has no writes at all")
	assert.Nil(t, MeasureShards(writes, nil, at(150), at(900), ""))
}

func TestStatsAndSummary(t *testing.T) {
	s := StatsOf([]time.Duration{5, 1, 3, 2, 4})
	assert.Equal(t, Stats{N: 5, P50: 3, P99: 5, Max: 5}, s)
	assert.Equal(t, Stats{}, StatsOf(nil))

	events := []Event{
		{Kind: "kill", Available: true, Outage: Outage{Recovered: true, RTO: 300 * time.Millisecond}, Record: &SystemRecord{RTO: 200 * time.Millisecond}},
		{Kind: "kill", Available: true, Outage: Outage{Recovered: true, RTO: 500 * time.Millisecond}, LostWrites: 1, Record: &SystemRecord{RTO: 250 * time.Millisecond, RPO: 1}},
		{Kind: "pause", Available: true, Outage: Outage{Recovered: false}, Record: &SystemRecord{RPO: -1}},
		{Kind: "evacuate", Available: false, Reason: "not offered"},
	}
	sum := Summarize(events)
	assert.Len(t, sum, 2, "an unavailable step is not summarised")
	assert.Equal(t, "kill", sum[0].Kind)
	assert.Equal(t, 2, sum[0].Events)
	assert.Equal(t, 500*time.Millisecond, sum[0].RTO.Max)
	assert.Equal(t, 1, sum[0].LostWrites)
	assert.Equal(t, int64(1), sum[0].SystemRPO)
	assert.Equal(t, 0, sum[1].Recovered)
	assert.Equal(t, int64(-1), sum[1].SystemRPO)
}

func TestErrorKind(t *testing.T) {
	for want, err := range map[string]error{
		"read_only":       &mysql.MySQLError{Number: 1290},
		"mysql_1205":      &mysql.MySQLError{Number: 1205},
		"timeout":         context.DeadlineExceeded,
		"connection_lost": fmt.Errorf("commit: %w", driver.ErrBadConn),
		"no_master":       fmt.Errorf("x: %w", router.ErrNoMaster),
		"shard_frozen":    fmt.Errorf("x: %w", router.ErrShardFrozen),
		"not_owner":       &router.NotOwner{Owner: "dc-b1"},
	} {
		assert.Equal(t, want, errorKind(err), "%v", err)
	}
}
