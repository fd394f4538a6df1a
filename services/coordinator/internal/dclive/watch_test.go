package dclive

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// greeter is a TCP server that speaks first, as a MySQL server does.
func greeter(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte{0x0a})
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestWatcherDeclaresLossOnlyWhenPeersConfirm runs the probers of two DCs
// and the leader's watcher over a real etcd: a DC whose lease is gone but
// whose master still answers the others is not lost; once its master stops
// answering it is declared LOST, exactly once, and ALIVE again when its
// lease returns.
func TestWatcherDeclaresLossOnlyWhenPeersConfirm(t *testing.T) {
	ctx := t.Context()
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
	}
	masters := map[string]net.Listener{}
	for _, dc := range topo.DCs {
		ln := greeter(t)
		masters[dc.Name] = ln
		topo.Clusters = append(topo.Clusters, topology.Cluster{Name: "main", DC: dc.Name,
			Instances: []topology.Instance{{Name: dc.Name + "-db1", Addr: ln.Addr().String()}}})
		_, err := st.PutMaster(ctx, state.MasterRecord{DC: dc.Name, Cluster: "main", Instance: dc.Name + "-db1",
			Addr: ln.Addr().String(), Term: 1}, -1, nil)
		require.NoError(t, err)
		require.NoError(t, st.PutDCLease(ctx, state.DCLease{DC: dc.Name, Agent: "agent"}, 0, nil))
	}
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	resp, err := st.Client().Put(ctx, st.Key("leader-fence"), "me")
	require.NoError(t, err)
	fence := state.Fence{Key: st.Key("leader-fence"), Rev: resp.Header.Revision}

	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	log := zerolog.New(zerolog.NewTestWriter(t))
	var probers []*Prober
	for _, dc := range []string{"dc-a2", "dc-b1"} {
		p, err := NewProber(ProberOptions{Store: st, DC: dc, ID: "coord-" + dc, Logger: log, Now: clk.Now})
		require.NoError(t, err)
		probers = append(probers, p)
	}
	probe := func() {
		for _, p := range probers {
			require.NoError(t, p.Once(ctx))
		}
	}
	var lost []Status
	w := NewWatcher(WatcherOptions{Store: st, ID: "leader", Logger: log, Now: clk.Now,
		OnLost: func(_ context.Context, _ state.Fence, dc string, s Status) {
			assert.Equal(t, "dc-a1", dc)
			lost = append(lost, s)
		}})
	status := func(dc string) Status {
		s, _, err := state.Get[Status](ctx, st, StatusKey(st, dc))
		require.NoError(t, err)
		return s
	}

	probe()
	require.NoError(t, w.Once(ctx, fence))
	for _, dc := range topo.DCs {
		assert.Equal(t, Alive, status(dc.Name).Code, dc.Name)
	}

	t.Log("dc-a1's lease is gone, its master still answers the others")
	_, err = st.Client().Delete(ctx, st.DCLeaseKey("dc-a1"))
	require.NoError(t, err)
	require.NoError(t, w.Once(ctx, fence))
	assert.Equal(t, LeaseGrace, status("dc-a1").Code)
	clk.Add(2 * time.Second)
	probe()
	require.NoError(t, w.Once(ctx, fence))
	s := status("dc-a1")
	assert.Equal(t, SeenByPeers, s.Code, s.Reason)
	assert.Empty(t, lost)

	t.Log("dc-a1's master stops answering")
	require.NoError(t, masters["dc-a1"].Close())
	clk.Add(time.Second)
	probe()
	require.NoError(t, w.Once(ctx, fence))
	s = status("dc-a1")
	require.Equal(t, Lost, s.Code, s.Reason)
	assert.Equal(t, []string{"dc-a2", "dc-b1"}, s.Witnesses)
	require.NoError(t, w.Once(ctx, fence))
	require.Len(t, lost, 1, "a loss is acted on once")
	assert.Equal(t, Alive, status("dc-b1").Code)

	t.Log("dc-a1's lease returns")
	require.NoError(t, st.PutDCLease(ctx, state.DCLease{DC: "dc-a1", Agent: "agent"}, 0, nil))
	require.NoError(t, w.Once(ctx, fence))
	assert.Equal(t, Alive, status("dc-a1").Code)

	t.Log("a deposed leader writes nothing")
	_, err = st.Client().Delete(ctx, st.DCLeaseKey("dc-b1"))
	require.NoError(t, err)
	require.NoError(t, w.Once(ctx, state.Fence{Key: fence.Key, Rev: fence.Rev + 1000}))
	assert.Equal(t, Alive, status("dc-b1").Code)
}

// TestWatcherNeverFailsOverADCNeverSeen: a DC whose lease no leader ever
// saw (its agents have not started) is DCNeverSeen, not lost, even when
// no peer reaches it; once seen, a new leader reads that back from the
// stored status and treats the lease's loss as a loss.
func TestWatcherNeverFailsOverADCNeverSeen(t *testing.T) {
	ctx := t.Context()
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
	}
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	require.NoError(t, st.PutDCLease(ctx, state.DCLease{DC: "dc-b1", Agent: "agent"}, 0, nil))
	resp, err := st.Client().Put(ctx, st.Key("leader-fence"), "me")
	require.NoError(t, err)
	fence := state.Fence{Key: st.Key("leader-fence"), Rev: resp.Header.Revision}
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	log := zerolog.New(zerolog.NewTestWriter(t))
	lost := 0
	newWatcher := func() *Watcher {
		return NewWatcher(WatcherOptions{Store: st, ID: "leader", Logger: log, Now: clk.Now,
			OnLost: func(context.Context, state.Fence, string, Status) { lost++ }})
	}
	view := func() {
		require.NoError(t, st.PutDCView(ctx, state.DCView{Observer: "dc-b1", Target: "dc-a1", MastersProbed: 1, ObservedAt: clk.Now()}, 0))
	}
	status := func() Status {
		s, _, err := state.Get[Status](ctx, st, StatusKey(st, "dc-a1"))
		require.NoError(t, err)
		return s
	}
	w := newWatcher()
	require.NoError(t, w.Once(ctx, fence))
	clk.Add(5 * time.Second)
	view()
	require.NoError(t, w.Once(ctx, fence))
	assert.Equal(t, NeverSeen, status().Code)
	assert.Zero(t, lost)

	t.Log("dc-a1's agents start: seen; a new leader takes over; the lease goes")
	require.NoError(t, st.PutDCLease(ctx, state.DCLease{DC: "dc-a1", Agent: "agent"}, 0, nil))
	require.NoError(t, w.Once(ctx, fence))
	require.Equal(t, Alive, status().Code)
	seenAt := status().LastSeen
	require.False(t, seenAt.IsZero())
	_, err = st.Client().Delete(ctx, st.DCLeaseKey("dc-a1"))
	require.NoError(t, err)
	w = newWatcher()
	require.NoError(t, w.Once(ctx, fence))
	assert.Equal(t, LeaseGrace, status().Code)
	clk.Add(2 * time.Second)
	view()
	require.NoError(t, w.Once(ctx, fence))
	s := status()
	require.Equal(t, Lost, s.Code, s.Reason)
	require.Equal(t, 1, lost)
	assert.Equal(t, seenAt, s.LastSeen)
}
