package analysis

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drplane/drplane/pkg/gtid"
)

func TestSettle(t *testing.T) {
	prio := map[Code]int{}
	for _, p := range Problems() {
		prio[p.Code] = p.Priority
	}
	a := func(code Code, inst string, rec Recovery) Analysis {
		return Analysis{Code: code, Instance: inst, Priority: prio[code], Recovery: rec}
	}
	type pair struct {
		Code     Code
		Instance string
	}
	pairs := func(as []Analysis) []pair {
		out := []pair{}
		for _, x := range as {
			out = append(out, pair{x.Code, x.Instance})
		}
		return out
	}

	t.Run("failover holds back repoint, rejoin and restart", func(t *testing.T) {
		got := settle([]Analysis{
			a(ReplicationStopped, "r2", RecoveryRestartReplication),
			a(DeadMaster, "m1", RecoveryFailover),
			a(ReplicaWrongSource, "r1", RecoveryRepoint),
			a(OrphanInstance, "x", RecoveryRejoin),
			a(DeadReplica, "r3", RecoveryAlert),
			a(WritableReplica, "x", RecoveryFence),
		}, nil)
		assert.Equal(t, []pair{{WritableReplica, "x"}, {DeadMaster, "m1"}, {DeadReplica, "r3"}}, pairs(got))
	})
	t.Run("errant GTIDs hold back the instance's repoint, rejoin and restart only", func(t *testing.T) {
		got := settle([]Analysis{
			a(ErrantGTID, "r1", RecoveryQuarantine),
			a(ReplicationStopped, "r1", RecoveryRestartReplication),
			a(ReplicaWrongSource, "r1", RecoveryRepoint),
			a(LaggingReplica, "r1", RecoveryAlert),
			a(ReplicationStopped, "r2", RecoveryRestartReplication),
		}, nil)
		assert.Equal(t, []pair{{ErrantGTID, "r1"}, {ReplicationStopped, "r2"}, {LaggingReplica, "r1"}}, pairs(got))
	})
	t.Run("one analysis per action and instance, the higher row wins", func(t *testing.T) {
		got := settle([]Analysis{
			a(WritableReplica, "x", RecoveryFence),
			a(TwoWritableMasters, "x", RecoveryFence),
			a(TwoWritableMasters, "y", RecoveryFence),
			a(DeadReplica, "z", RecoveryAlert),
			a(LaggingReplica, "z", RecoveryAlert),
		}, nil)
		assert.Equal(t, []pair{{TwoWritableMasters, "x"}, {TwoWritableMasters, "y"}, {DeadReplica, "z"}, {LaggingReplica, "z"}}, pairs(got))
	})
	t.Run("quarantined instances keep only their alert", func(t *testing.T) {
		got := settle([]Analysis{
			a(TwoWritableMasters, "q", RecoveryFence),
			a(Quarantined, "q", RecoveryAlert),
			a(DeadReplica, "r1", RecoveryAlert),
		}, map[string]bool{"q": true})
		assert.Equal(t, []pair{{DeadReplica, "r1"}, {Quarantined, "q"}}, pairs(got))
	})
	t.Run("nothing in, empty slice out", func(t *testing.T) {
		got := settle(nil, nil)
		assert.NotNil(t, got)
		assert.Empty(t, got)
	})
}

func TestComparePos(t *testing.T) {
	p := func(s string) gtid.Pos {
		x, err := gtid.ParsePos(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"0-1-10", "0-1-10", 0},
		{"0-1-10", "0-2-10", 0},
		{"0-1-11", "0-1-10", 1},
		{"0-1-10", "0-1-10,1-1-1", -1},
		{"0-1-9,1-1-20", "0-1-10,1-1-5", 1},
		{"0-1-9,1-1-1", "0-1-1,1-1-9", 0},
		{"0-1-18446744073709551615,1-1-2", "0-1-1,1-1-18446744073709551615", 1},
		{"", "", 0},
		{"", "0-1-1", -1},
	} {
		assert.Equal(t, tc.want, comparePos(p(tc.a), p(tc.b)), "%s vs %s", tc.a, tc.b)
		assert.Equal(t, -tc.want, comparePos(p(tc.b), p(tc.a)), "%s vs %s", tc.b, tc.a)
	}
}
