package reship

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// BenchmarkDurableShipping measures what holding each transaction until a
// replica received it adds to shipping: a master with two semi-sync
// replicas takes a steady load of single-row autocommit INSERTs (rate
// DRPLANE_BENCH_RATE per second, default 100 as the lab's drill writers,
// for DRPLANE_BENCH_SECONDS, default 20), and each request's latency is the
// time its message was stored in the outbound stream minus the row's
// updated_at (set by the INSERT, so it includes the master's own commit and
// semi-sync wait). It runs once with the gate and once shipping at read
// time, and reports p50/p99/max of both. Run it with
//
//	go test ./internal/reship -run '^$' -bench DurableShipping -benchtime 1x -v
func BenchmarkDurableShipping(b *testing.B) {
	rate := envInt("DRPLANE_BENCH_RATE", 100)
	secs := envInt("DRPLANE_BENCH_SECONDS", 20)
	for _, mode := range []struct {
		name      string
		undurable bool
	}{{"durable", false}, {"at_read", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				lat := shipLatencies(b, rate, time.Duration(secs)*time.Second, mode.undurable)
				p := func(q float64) float64 {
					return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
				}
				b.ReportMetric(p(0.5), "p50_ms")
				b.ReportMetric(p(0.99), "p99_ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_ms")
				b.ReportMetric(float64(len(lat)), "requests")
				b.Logf("%s: %d requests at %d/s: p50 %.2f ms, p99 %.2f ms, max %.2f ms", mode.name, len(lat), rate,
					p(0.5), p(0.99), float64(lat[len(lat)-1].Microseconds())/1000)
			}
		})
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// shipLatencies runs the load and returns the sorted latencies.
func shipLatencies(b *testing.B, rate int, d time.Duration, undurable bool) []time.Duration {
	b.StopTimer()
	bd := startBed(b, 3)
	e := bd.startEngineWith(StartCurrent, 1024, undurable)
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	check.For(b, time.Minute, 10*time.Millisecond, func() error { return e.Check(ctx) })
	db := bd.db.AppDB(bd.db.Master)
	const writers = 8
	db.SetMaxOpenConns(writers)
	b.StartTimer()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	total := int(d.Seconds()) * rate
	began := time.Now()
	for w := range writers {
		wg.Go(func() {
			for i := w; i < total; i += writers {
				// Pacing, not waiting for a condition: request i is sent at its slot of the rate.
				if wait := time.Until(began.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
					time.Sleep(wait)
				}
				if _, err := db.ExecContext(ctx, fmt.Sprintf(
					"INSERT INTO orders (id, user_id, amount_cents, note) VALUES (%d, %d, 1, 'bench')", i+1, 7000+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	bd.waitCaughtUp(bd.db.Master)
	b.StopTimer()
	s, err := bd.js.Stream(ctx, embednats.OutStream(testDC))
	require.NoError(b, err)
	info, err := s.Info(ctx)
	require.NoError(b, err)
	var lat []time.Duration
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		require.NoError(b, err)
		var m drplanev1.ChangeEvent
		require.NoError(b, proto.Unmarshal(raw.Data, &m))
		for _, row := range m.GetRows() {
			at, err := time.Parse("2006-01-02 15:04:05.999999", colMap(row.GetAfter())["updated_at"])
			require.NoError(b, err)
			lat = append(lat, raw.Time.Sub(at))
		}
	}
	require.Len(b, lat, total, "every request shipped once")
	slices.Sort(lat)
	e.stop()
	return lat
}
