package leader_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/leader"
)

const waitFor = 10 * time.Second

// candidate is one running Leader.
type candidate struct {
	l    *leader.Leader
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, st *state.Store, id string) *candidate {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := leader.New(leader.Options{Store: st, ID: id, TTL: 2 * time.Second, RetryDelay: 50 * time.Millisecond, Registerer: reg, Logger: zerolog.Nop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{l: l, reg: reg, stop: cancel, done: make(chan error, 1)}
	go func() { c.done <- l.Run(ctx) }()
	t.Cleanup(c.shutdown(t))
	return c
}

// shutdown stops the candidate once; later calls do nothing.
func (c *candidate) shutdown(t *testing.T) func() {
	return func() {
		c.stop()
		select {
		case err, ok := <-c.done:
			if ok {
				assert.NoError(t, err)
				close(c.done)
			}
		case <-time.After(waitFor):
			t.Error("leader did not stop")
		}
	}
}

// leaders returns the candidates that believe they lead.
func leaders(cs ...*candidate) []*candidate {
	var out []*candidate
	for _, c := range cs {
		if c.l.IsLeader() {
			out = append(out, c)
		}
	}
	return out
}

func gauge(t *testing.T, c *candidate) float64 {
	t.Helper()
	mfs, err := c.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "drplane_coordinator_leader" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no drplane_coordinator_leader metric")
	return 0
}

func TestOneLeaderAndHandover(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	a, b, c := start(t, st, "coord-a"), start(t, st, "coord-b"), start(t, st, "coord-c")
	all := []*candidate{a, b, c}

	check.For(t, waitFor, 10*time.Millisecond, func() error { return check.That(len(leaders(all...)) == 1, "len(leaders(all...)) == 1") })
	first := leaders(all...)[0]
	id, err := a.l.LeaderID(t.Context())
	require.NoError(t, err)
	assert.Equal(t, first.l.ID(), id, "every coordinator sees the same leader")
	assert.InDelta(t, 1.0, gauge(t, first), 0)
	for _, o := range all {
		if o != first {
			assert.InDelta(t, 0.0, gauge(t, o), 0)
			_, ok := o.l.Fence()
			assert.False(t, ok)
		}
	}
	fence, ok := first.l.Fence()
	require.True(t, ok)
	assert.Contains(t, fence.Key, first.l.Prefix()+"/")

	// The fence guards writes while the term lasts.
	_, err = state.Put(t.Context(), st, st.Key("fenced"), "one", state.PutOptions{PrevRev: -1, Fence: &fence})
	require.NoError(t, err)

	// A clean shutdown resigns: another coordinator leads well before the
	// session TTL would have expired.
	term, ok := first.l.Current()
	require.True(t, ok)
	stopped := time.Now()
	first.shutdown(t)()
	select {
	case <-term.Lost():
	default:
		t.Fatal("the term did not end with Run")
	}
	rest := make([]*candidate, 0, 2)
	for _, o := range all {
		if o != first {
			rest = append(rest, o)
		}
	}
	check.For(t, waitFor, 5*time.Millisecond, func() error { return check.That(len(leaders(rest...)) == 1, "len(leaders(rest...)) == 1") })
	assert.Less(t, time.Since(stopped), time.Second, "handover after resign should not wait for the TTL")
	second := leaders(rest...)[0]
	id, err = second.l.LeaderID(t.Context())
	require.NoError(t, err)
	assert.Equal(t, second.l.ID(), id)

	// The old fence no longer holds.
	_, err = state.Put(t.Context(), st, st.Key("fenced"), "two", state.PutOptions{PrevRev: -1, Fence: &fence})
	require.ErrorIs(t, err, state.ErrFenced)
}

func TestRevokedSessionCampaignsAgain(t *testing.T) {
	cli := harness.EtcdClient(t)
	st := state.New(cli, "")
	a := start(t, st, "coord-a")

	term, err := a.l.Await(t.Context())
	require.NoError(t, err)
	ctx, cancel := term.Context(t.Context())
	defer cancel()

	// Revoke the election session's lease, as if etcd expired it.
	resp, err := cli.Get(t.Context(), term.Fence.Key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	_, err = cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)

	select {
	case <-term.Lost():
	case <-time.After(waitFor):
		t.Fatal("losing the election key did not end the term")
	}
	check.For(t, waitFor, 5*time.Millisecond, func() error { return check.That(ctx.Err() != nil, "the term's context ends with it") })

	// It campaigns again and gets a new, later fence.
	next, err := a.l.Await(t.Context())
	require.NoError(t, err)
	assert.Greater(t, next.Fence.Rev, term.Fence.Rev)
	assert.InDelta(t, 1.0, gauge(t, a), 0)
}

func TestNoLeader(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	l, err := leader.New(leader.Options{Store: st, ID: "idle", Logger: zerolog.Nop()})
	require.NoError(t, err)
	_, err = l.LeaderID(t.Context())
	require.ErrorIs(t, err, leader.ErrNoLeader)
	assert.False(t, l.IsLeader())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = l.Await(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
