package supervise

import (
	"context"
	"errors"
	"time"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// topologyReadTimeout bounds FollowTopology's read (at least; ReadTimeout
// when longer): nothing waits for it but the first campaign.
const topologyReadTimeout = 2 * time.Second

// FollowTopology keeps the DC's topology current for Lead and SelfFence
// until ctx ends, whether this agent leads or not, and closes known once etcd has
// answered the first read (with the topology or with none stored). The
// agent campaigns only after that: a leader cut off from etcd right after
// it won the election, before its first cycle could read the topology,
// still knows which instances to fence. (Without it such a leader fenced
// nothing and its master stayed writable while the standby took over.)
func (s *Supervisor) FollowTopology(ctx context.Context, known chan<- struct{}) {
	told := false
	tell := func() {
		if !told {
			told = true
			close(known)
		}
	}
	wait := retry.New(s.o.Interval, 5*time.Second)
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, max(s.o.ReadTimeout, topologyReadTimeout))
		cur, rev, err := s.o.Store.Topology(rctx)
		cancel()
		switch {
		case err == nil:
			s.keepTopology(&cur)
			tell()
			wait.Reset()
			s.followTopology(ctx, rev+1)
		case errors.Is(err, state.ErrNotFound):
			// Nothing to fence or supervise yet; look again at the next
			// interval.
			s.keepTopology(nil)
			tell()
			wait.Reset()
		case ctx.Err() == nil:
			s.o.Logger.Warn().Err(err).Msg("read topology")
		}
		if !wait.Wait(ctx) {
			return
		}
	}
}

// followTopology applies the topology's changes from revision rev until
// ctx ends or the watch fails.
func (s *Supervisor) followTopology(ctx context.Context, rev int64) {
	for ev := range state.Watch[topology.Topology](ctx, s.o.Store, s.o.Store.TopologyKey(), false, rev) {
		if ev.Deleted {
			s.keepTopology(nil)
			continue
		}
		s.keepTopology(&ev.Value)
	}
}

func (s *Supervisor) keepTopology(t *topology.Topology) {
	s.mu.Lock()
	s.lastTopo = t
	s.mu.Unlock()
	select {
	case s.topoChanged <- struct{}{}:
	default:
	}
}

// topology returns the topology FollowTopology keeps (nil: none yet).
func (s *Supervisor) topology() *topology.Topology {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastTopo
}
