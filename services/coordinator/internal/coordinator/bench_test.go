package coordinator_test

import (
	"context"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// benchWatcher records the newest orders map revision a stream delivered
// and when it arrived.
type benchWatcher struct {
	rev atomic.Int64
	at  atomic.Int64 // unix nanoseconds
}

// BenchmarkWatchPropagation measures how long a shard map change takes to
// reach every watcher: two coordinators, 50 WatchRoutes streams over real
// gRPC split between them, and per iteration one SetShardState call (queued,
// applied by the leader in a fenced transaction, watched by every
// coordinator's cache, pushed to every stream). It reports the p50 and p99
// of the time from the start of the call until the last of the 50 streams
// delivered the new revision.
func BenchmarkWatchPropagation(b *testing.B) {
	const subscribers = 50
	st := state.New(harness.EtcdClient(b), "")
	seed(b, st)
	cs := []*coord{startCoord(b, st, "coord-1"), startCoord(b, st, "coord-2")}
	leaderOf(b, cs)

	notify := make(chan struct{}, 1)
	ws := make([]*benchWatcher, subscribers)
	for i := range ws {
		w := &benchWatcher{}
		ws[i] = w
		ctx, cancel := context.WithCancel(as(b, viewerToken))
		b.Cleanup(cancel)
		stream, err := cs[i%len(cs)].shards.WatchRoutes(ctx, &drplanev1.WatchRoutesRequest{Keyspaces: []string{"orders"}})
		require.NoError(b, err)
		go func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				w.at.Store(time.Now().UnixNano())
				w.rev.Store(resp.GetTable().GetMapRevision())
				select {
				case notify <- struct{}{}:
				default:
				}
			}
		}()
	}
	// allAt returns when every watcher has rev, and the latest arrival.
	allAt := func(rev int64) time.Time {
		deadline := time.After(callTimeout)
		for {
			last, ok := int64(0), true
			for _, w := range ws {
				if w.rev.Load() < rev {
					ok = false
					break
				}
				last = max(last, w.at.Load())
			}
			if ok {
				return time.Unix(0, last)
			}
			select {
			case <-notify:
			case <-time.After(5 * time.Millisecond):
			case <-deadline:
				b.Fatalf("not every watcher reached revision %d", rev)
			}
		}
	}
	allAt(loadMap(b, st, "orders").Revision)

	ctx := as(b, adminToken)
	states := []drplanev1.ShardState{drplanev1.ShardState_SHARD_STATE_FROZEN, drplanev1.ShardState_SHARD_STATE_ACTIVE}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		resp, err := cs[i%len(cs)].shards.SetShardState(ctx, &drplanev1.SetShardStateRequest{
			Keyspace: "orders", Shard: 1, State: states[i%2], Reason: "benchmark",
		})
		if err != nil {
			b.Fatal(err)
		}
		last := allAt(resp.GetMutation().GetRevision())
		lat = append(lat, last.Sub(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(subscribers), "watchers")
}
