package failover

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/topology"
)

func gp(t *testing.T, s string) gtid.Pos {
	t.Helper()
	p, err := gtid.ParsePos(s)
	require.NoError(t, err)
	return p
}

// TestChooseRetriesAFailedRead: the most advanced candidate's first fresh
// read times out; it is read again and chosen, not passed over for a less
// advanced one.
func TestChooseRetriesAFailedRead(t *testing.T) {
	r := NewRunner(Options{ReadWait: 2 * time.Second})
	var mu sync.Mutex
	calls := map[string]int{}
	pos := map[string]string{"a:1": "0-1-10", "b:1": "0-1-12"}
	r.read = func(_ context.Context, addr string) (Position, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[addr]++
		if addr == "b:1" && calls[addr] == 1 {
			return Position{}, context.DeadlineExceeded
		}
		return Position{Received: gp(t, pos[addr]), Binlog: gp(t, pos[addr])}, nil
	}
	cl := topology.Cluster{Name: "main", Instances: []topology.Instance{{Name: "a", Addr: "a:1"}, {Name: "b", Addr: "b:1"}}}
	in, p, seen, err := r.choose(context.Background(), cl, []string{"a", "b"})
	require.NoError(t, err)
	assert.Equal(t, "b", in.Name)
	assert.Equal(t, "0-1-12", p.Received.String())
	assert.Len(t, seen, 2)
	assert.Equal(t, 2, calls["b:1"])
}

// TestHighWaterCountsUnreadCandidates: a candidate that could not be read
// still counts for the RPO with the position the analysis saw, so a
// promotion that lacks it is not reported lossless.
func TestHighWaterCountsUnreadCandidates(t *testing.T) {
	plan := Plan{OldPos: "0-1-10", Candidates: []string{"a", "b"}, Known: map[string]string{"a": "0-1-10", "b": "0-1-14"}}
	hw := highWater(plan, []gtid.Pos{gp(t, "0-1-11")})
	assert.Equal(t, "0-1-14", hw.String())
	assert.Nil(t, highWater(Plan{}, nil), "nothing known: no RPO")
}
