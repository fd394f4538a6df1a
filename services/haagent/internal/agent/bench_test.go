package agent_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// BenchmarkFailoverDrill runs b.N kill -9 drills against one cluster with
// two agents polling every 200 ms (the lab's setting) and a writer that
// follows the master record. Each drill kills the current master, waits
// for the first write acknowledged by the new master, restarts the old
// master and waits until the agent has rejoined it. It reports, over the
// drills, the p50/p99/max of kill → first acknowledged write (what the
// application sees) and of the agent's recorded RTO (failure detected →
// new master writable), and fails on any lost acknowledged write or any
// sample with two writable instances.
//
//	go test -run '^$' -bench BenchmarkFailoverDrill -benchtime 20x ./internal/agent
func BenchmarkFailoverDrill(b *testing.B) {
	e := hatest.Start(b, hatest.Options{})
	var agents []*running
	for _, id := range []string{"agent-1", "agent-2"} {
		cfg := testConfig(e, id)
		cfg.PollInterval = 200 * time.Millisecond
		agents = append(agents, startAgent(b, e, cfg, nil))
	}
	leader(b, agents...)
	w := e.StartWriter()
	s := e.StartSampler()
	check.For(b, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "acknowledged writes") })
	var appRTO, recRTO []time.Duration
	b.ResetTimer()
	for range b.N {
		rec, _ := e.Master()
		old := e.Instance(rec.Instance)
		if err := old.Kill(); err != nil {
			b.Fatal(err)
		}
		killed := time.Now()
		next := masterChanged(b, e, old.Name(), 15*time.Second)
		var first time.Time
		check.For(b, 15*time.Second, check.Every, func() error {
			first = w.FirstOKAfter(killed)
			return check.That(!first.IsZero(), "a write on the new master")
		})
		appRTO = append(appRTO, first.Sub(killed))
		recs := failovers(b, e)
		recRTO = append(recRTO, time.Duration(recs[len(recs)-1].RTO))
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := old.Start(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		check.For(b, 30*time.Second, check.Every, func() error {
			for _, in := range e.Instances() {
				if in.Name() != next.Instance && !replicatesFrom(e, in, next.Addr) {
					return check.That(false, "the old master rejoined")
				}
			}
			return nil
		})
		b.StartTimer()
	}
	b.StopTimer()
	acked, _ := w.Stop()
	_, violations := s.Stop()
	rec, _ := e.Master()
	missing, err := e.MissingAcked(rec.Addr, acked)
	if err != nil {
		b.Fatal(err)
	}
	if len(missing) > 0 || len(violations) > 0 {
		b.Fatalf("%d acknowledged writes lost, %d split-brain samples: %v", len(missing), len(violations), violations)
	}
	report(b, "app", appRTO)
	report(b, "rec", recRTO)
	b.Logf("%d drills, %d acknowledged writes, 0 lost, 0 split-brain samples", b.N, len(acked))
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(q(0.5).Milliseconds()), name+"-p50-ms")
	b.ReportMetric(float64(q(0.99).Milliseconds()), name+"-p99-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), name+"-max-ms")
	b.Logf("%s RTO over %d drills: p50 %s, p99 %s, max %s", name, len(ds), q(0.5), q(0.99), ds[len(ds)-1])
}

// BenchmarkSwitchover runs b.N switchovers through intents (as `drctl
// switchover` makes them) under continuous writes, each to the most
// advanced replica, and reports the p50/p99/max of the write-block window
// recorded by the agent. It fails on any lost acknowledged write.
//
//	go test -run '^$' -bench BenchmarkSwitchover -benchtime 20x ./internal/agent
func BenchmarkSwitchover(b *testing.B) {
	e := hatest.Start(b, hatest.Options{})
	cfg := testConfig(e, "agent-1")
	cfg.PollInterval = 200 * time.Millisecond
	leader(b, startAgent(b, e, cfg, nil))
	w := e.StartWriter()
	check.For(b, 10*time.Second, check.Every, func() error { return check.That(w.Acked() >= 20, "acknowledged writes") })
	var block []time.Duration
	ctx := context.Background()
	for i := range b.N {
		id := "bench-" + time.Now().Format("150405.000000") + "-" + strconv.Itoa(i)
		if _, err := e.Store.CreateSwitchover(ctx, state.SwitchoverIntent{ID: id, DC: hatest.DC, Cluster: hatest.Cluster,
			RequestedBy: "bench", RequestedAt: time.Now().UTC(), State: state.SwitchoverPending}); err != nil {
			b.Fatal(err)
		}
		var in state.SwitchoverIntent
		check.For(b, 30*time.Second, check.Every, func() error {
			var err error
			in, _, err = e.Store.Switchover(ctx, hatest.DC, hatest.Cluster)
			if err != nil {
				return err
			}
			return check.That(in.ID == id && (in.State == state.SwitchoverDone || in.State == state.SwitchoverFailed), "the switchover finished")
		})
		if in.State != state.SwitchoverDone {
			b.Fatalf("switchover %s failed: %s", id, in.Error)
		}
		recs := failovers(b, e)
		block = append(block, time.Duration(recs[len(recs)-1].BlockWindow))
		b.StopTimer()
		rec, _ := e.Master()
		check.For(b, 30*time.Second, check.Every, func() error {
			for _, in := range e.Instances() {
				if in.Name() != rec.Instance && !replicatesFrom(e, in, rec.Addr) {
					return check.That(false, "every replica replicating from the new master")
				}
			}
			return nil
		})
		b.StartTimer()
	}
	b.StopTimer()
	acked, _ := w.Stop()
	rec, _ := e.Master()
	missing, err := e.MissingAcked(rec.Addr, acked)
	if err != nil {
		b.Fatal(err)
	}
	if len(missing) > 0 {
		b.Fatalf("%d acknowledged writes lost", len(missing))
	}
	report(b, "block", block)
	b.Logf("%d switchovers, %d acknowledged writes, 0 lost", b.N, len(acked))
}
