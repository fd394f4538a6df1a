package repl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/check"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Settings of BenchmarkEvacuation; DRPLANE_BENCH_SHARDS and
// DRPLANE_BENCH_PARALLEL override them.
const (
	benchEvacShards   = 1024
	benchEvacParallel = 128
)

// BenchmarkEvacuation evacuates dc-a1 (a third of a 1,024-shard keyspace)
// and restores it with --move-home, b.N times, on real parts: the
// replication bed's MariaDB, reship and collector in three DCs, one
// coordinator process, drctl, and SDK writers on every shard throughout.
// It reports, per evacuation and restore, the operation's duration (the
// leader's start to its finish) and the per-shard block window p50/p99/max
// (freeze to flip), and at the end the acknowledged writes and how many of
// them are missing from any DC (it fails unless none is).
//
// Run it once: go test -run '^$' -bench BenchmarkEvacuation -benchtime 1x ./repl/
func BenchmarkEvacuation(b *testing.B) {
	shards := envInt("DRPLANE_BENCH_SHARDS", benchEvacShards)
	parallel := strconv.Itoa(envInt("DRPLANE_BENCH_PARALLEL", benchEvacParallel))
	bd := startBedWith(b, shards)
	bd.startServices()
	c := bd.newCoordinator(bd.dcs[dcB1], 1)
	check.For(b, 30*time.Second, 50*time.Millisecond, func() error { return check.That(c.leads(b.Context()), "%s leads", c.id) })
	api := dialAPI(b, c.grpc)
	load := bd.startSDKLoad(b, api)
	load.waitAcked(b, 200)
	owned := len(bd.ownedBy(b, dcA1))

	run := func(what string, args ...string) operationView {
		began := time.Now()
		r := bd.drctl(b, c.grpc, nil, append(args, "--parallel", parallel, "--wait", "-o", "json", "--reason", "benchmark")...)
		wall := time.Since(began)
		require.Equal(b, 0, r.code, "%s: %s", what, r.stderr)
		hs := parseHandoffs(b, r.stdout)
		require.NotEmpty(b, hs, what)
		op := bd.operation(b, c, hs[0].Operation)
		require.Equal(b, "OPERATION_STATE_SUCCEEDED", op.State, what)
		t := op.Totals
		b.Logf("%s of %d shards (%d per wave): %d moved in %d waves, %d ms (drctl %s); block p50 %d ms, p99 %d ms, max %d ms",
			what, t.Shards, envInt("DRPLANE_BENCH_PARALLEL", benchEvacParallel), t.Moved, t.Waves, t.DurationMs,
			wall.Round(time.Millisecond), t.BlockP50Ms, t.BlockP99Ms, t.BlockMaxMs)
		b.Logf("%s: %s", what, bd.evacRecordTimes(b, hs[0].Operation))
		b.Logf("%s: %s", what, waveSteps(b, api, hs[0].Operation, t.Waves))
		b.ReportMetric(float64(t.DurationMs), what+"-ms")
		b.ReportMetric(float64(t.BlockP50Ms), what+"-block-p50-ms")
		b.ReportMetric(float64(t.BlockP99Ms), what+"-block-p99-ms")
		return op
	}
	b.ResetTimer()
	for range b.N {
		op := run("evacuate", "evacuate", dcA1)
		require.Equal(b, owned, op.Totals.Moved)
		op = run("restore", "restore", dcA1, "--move-home")
		require.Equal(b, owned, op.Totals.Moved)
	}
	b.StopTimer()
	load.halt()
	bd.requireLoadEverywhere(b, load)
	b.Logf("SDK load on %d shards: %s; every acknowledged write is in every DC", shards, load.summary())
	b.ReportMetric(float64(load.ackedTotal()), "acked-writes")
	b.ReportMetric(0, "acked-lost")
}

// evacRecordTimes splits an operation's duration from its record: from
// its start to its first wave, per wave the time before the freeze
// (record written, map read, freeze committed), the block (freeze to
// flip) and the time after the flip up to the next wave's start, and from
// the last flip to its finish.
func (b *bed) evacRecordTimes(tb testing.TB, id string) string {
	tb.Helper()
	resp, err := b.store.Client().Get(tb.Context(), b.store.Key("operations", id))
	require.NoError(tb, err)
	require.Len(tb, resp.Kvs, 1)
	var r struct {
		StartedAt  time.Time `json:"started_at"`
		FinishedAt time.Time `json:"finished_at"`
		Handoffs   []struct {
			Wave     int       `json:"wave"`
			WaveAt   time.Time `json:"wave_at"`
			FrozenAt time.Time `json:"frozen_at"`
			DoneAt   time.Time `json:"done_at"`
		} `json:"handoffs"`
	}
	require.NoError(tb, json.Unmarshal(resp.Kvs[0].Value, &r))
	type wave struct{ at, frozen, done time.Time }
	var waves []wave
	for _, h := range r.Handoffs {
		for len(waves) <= h.Wave {
			waves = append(waves, wave{})
		}
		waves[h.Wave] = wave{h.WaveAt, h.FrozenAt, h.DoneAt}
	}
	ms := func(a, b time.Time) int64 { return b.Sub(a).Milliseconds() }
	var sb strings.Builder
	fmt.Fprintf(&sb, "start to the first wave %d ms; per wave before the freeze / block / after the flip:", ms(r.StartedAt, waves[0].at))
	for i, w := range waves {
		next := r.FinishedAt
		if i+1 < len(waves) {
			next = waves[i+1].at
		}
		fmt.Fprintf(&sb, " %d/%d/%d", ms(w.at, w.frozen), ms(w.frozen, w.done), ms(w.done, next))
	}
	sb.WriteString(" ms (after the last flip: up to the finish)")
	return sb.String()
}

// waveSteps reads the operation's operation.wave audit events through the
// API (it waits for all waves of them) and lists, per wave, the block
// window's four steps: the routers' acknowledgements of the freeze, the
// old owner's barrier, every DC's catch-up to it, and the flip's commit.
func waveSteps(tb testing.TB, api *apiclient.Client, id string, waves int) string {
	tb.Helper()
	var evs []*drplanev1.AuditEvent
	check.For(tb, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
		defer cancel()
		resp, err := api.Audit.SearchAudit(ctx, &drplanev1.SearchAuditRequest{Action: []string{"operation.wave"}, PageSize: 1000})
		if err != nil {
			return err
		}
		evs = evs[:0]
		for _, e := range resp.GetEvents() {
			if e.GetTarget() == id {
				evs = append(evs, e)
			}
		}
		return check.That(len(evs) >= waves, "%d of %d wave events of %s", len(evs), waves, id)
	})
	sort.Slice(evs, func(i, j int) bool {
		a, _ := strconv.Atoi(evs[i].GetParams()["wave"])
		b, _ := strconv.Atoi(evs[j].GetParams()["wave"])
		return a < b
	})
	var sb strings.Builder
	sb.WriteString("per wave acks/barrier/catch-up/flip:")
	for _, e := range evs {
		p := e.GetParams()
		fmt.Fprintf(&sb, " %s/%s/%s/%s", p["acks_ms"], p["barrier_ms"], p["catch_up_ms"], p["flip_ms"])
	}
	sb.WriteString(" ms")
	return sb.String()
}
