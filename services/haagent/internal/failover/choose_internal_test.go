package failover

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
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
	in, p, seen, err := r.choose(context.Background(), Plan{Cluster: cl, Candidates: []string{"a", "b"}})
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

// TestChooseDoesNotPassOverAnUnreadAdvancedCandidate: the candidate the
// analysis saw most advanced never answers its fresh read. The attempt ends
// (ErrBestUnread) instead of promoting one that lacks what it received —
// unless the plan accepts the loss, and then the record counts it.
func TestChooseDoesNotPassOverAnUnreadAdvancedCandidate(t *testing.T) {
	r := NewRunner(Options{ReadWait: 200 * time.Millisecond})
	r.read = func(_ context.Context, addr string) (Position, error) {
		if addr == "b:1" {
			return Position{}, context.DeadlineExceeded
		}
		return Position{Received: gp(t, "0-1-10"), Binlog: gp(t, "0-1-10")}, nil
	}
	cl := topology.Cluster{Name: "main", Instances: []topology.Instance{{Name: "a", Addr: "a:1"}, {Name: "b", Addr: "b:1"}}}
	plan := Plan{Cluster: cl, Candidates: []string{"b", "a"}, Known: map[string]string{"a": "0-1-10", "b": "0-1-14"}}
	_, _, _, err := r.choose(context.Background(), plan)
	require.ErrorIs(t, err, ErrBestUnread)
	assert.Contains(t, err.Error(), "b (")

	// Known no further than the readable one: nothing to wait for.
	even := plan
	even.Known = map[string]string{"a": "0-1-10", "b": "0-1-10"}
	in, _, _, err := r.choose(context.Background(), even)
	require.NoError(t, err)
	assert.Equal(t, "a", in.Name)

	plan.AcceptLoss = true
	in, _, seen, err := r.choose(context.Background(), plan)
	require.NoError(t, err)
	assert.Equal(t, "a", in.Name)
	p := r.start(state.KindFailover, cl, state.Fence{})
	p.rpo(highWater(plan, seen), gp(t, "0-1-10"), true)
	assert.Equal(t, int64(4), p.rec.RPOTransactions, "the loss is counted")
}

// TestRPOFromTheApplyWait: when the new master's position cannot be read
// the count comes from what it was waited to apply, a lower bound of what
// it has: none lost is exact, anything else is only an upper bound and the
// record says unknown, with the bound in a step.
func TestRPOFromTheApplyWait(t *testing.T) {
	r := NewRunner(Options{})
	cl := topology.Cluster{Name: "main"}
	p := r.start(state.KindFailover, cl, state.Fence{})
	p.rpo(gp(t, "0-1-10"), gp(t, "0-1-10"), false)
	assert.Equal(t, int64(0), p.rec.RPOTransactions)

	p = r.start(state.KindFailover, cl, state.Fence{})
	p.rpo(gp(t, "0-1-12"), gp(t, "0-1-10"), false)
	assert.Equal(t, int64(-1), p.rec.RPOTransactions)
	require.Len(t, p.rec.Steps, 1)
	assert.Equal(t, "rpo_unknown", p.rec.Steps[0].Name)
	assert.Contains(t, p.rec.Steps[0].Error, "at most 2")

	p = r.start(state.KindFailover, cl, state.Fence{})
	p.rpo(gp(t, "0-1-12"), gp(t, "0-1-10"), true)
	assert.Equal(t, int64(2), p.rec.RPOTransactions)
	assert.Equal(t, "0-1-12", p.rec.LostGTIDs)
}

// TestPromotedPosIsReadBeforeWrites: the position the RPO is counted from
// is the candidate's binlog read once (retrying a failed read), and the
// applied position stands in when it never answers.
func TestPromotedPosIsReadBeforeWrites(t *testing.T) {
	r := NewRunner(Options{ReadWait: 300 * time.Millisecond})
	calls := 0
	r.read = func(_ context.Context, _ string) (Position, error) {
		calls++
		if calls == 1 {
			return Position{}, errors.New("i/o timeout")
		}
		return Position{Binlog: gp(t, "0-1-11")}, nil
	}
	cand := topology.Instance{Name: "a", Addr: "a:1"}
	p := r.start(state.KindFailover, topology.Cluster{Name: "main"}, state.Fence{})
	has, exact := r.promotedPos(context.Background(), p, cand, Position{Received: gp(t, "0-1-10")})
	assert.True(t, exact)
	assert.Equal(t, "0-1-11", has.String())
	assert.Equal(t, 2, calls)

	r.read = func(_ context.Context, _ string) (Position, error) { return Position{}, errors.New("i/o timeout") }
	p = r.start(state.KindFailover, topology.Cluster{Name: "main"}, state.Fence{})
	has, exact = r.promotedPos(context.Background(), p, cand, Position{Received: gp(t, "0-1-10")})
	assert.False(t, exact)
	assert.Equal(t, "0-1-10", has.String())
	require.Len(t, p.rec.Steps, 1)
	assert.True(t, strings.HasPrefix(p.rec.Steps[0].Error, "counting from the applied position 0-1-10"), p.rec.Steps[0].Error)
}
