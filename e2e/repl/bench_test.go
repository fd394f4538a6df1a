package repl

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/drplane/drplane/pkg/check"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmark settings; DRPLANE_BENCH_ROWS, DRPLANE_BENCH_LAG_SECONDS,
// DRPLANE_BENCH_LAG_RATE and DRPLANE_BENCH_LAG_BATCH override them.
const (
	benchWriters   = 16
	benchBatchRows = 20
	// benchRows rows are written in single-row transactions, five times as
	// many in benchBatchRows-row ones.
	benchRows       = 40_000
	benchLagSeconds = 20
	benchLagRate    = 2000
	benchLagBatch   = 10
)

// benchMode is one shape of the write load.
type benchMode struct {
	name        string
	batch, rows int
}

// BenchmarkReplication measures, on one bed and in one run:
//
//  1. the ceiling: the load inserted straight into dc-a1's master with no
//     reship or collector running — benchWriters writers of single-row
//     autocommit INSERTs on dc-a1's shards, then the same writers with
//     benchBatchRows-row INSERTs of one user each (one request per
//     transaction);
//  2. the same loads with replication running, as fast as they go: the
//     apply rate in dc-b1 (rows over the span between the first and the last
//     request's dedup row, applied_at, in dc-b1) and its ratio to the
//     ceiling, with the CPU time of every process per 1000 rows;
//  3. the catch-up apply rate: the same load written while dc-b1's collector
//     is stopped, then applied from the backlog (the collector's own pace);
//  4. the lag at a steady benchLagRate rows/s from dc-a1, in transactions of
//     benchLagBatch rows of one user: a poller reads dc-b1's new rows every
//     2 ms; a row's lag is the start of the first query that returned it
//     minus its updated_at (set by dc-a1's INSERT and copied by the
//     collector), so it includes dc-a1's own commit and up to one poll
//     interval.
//
// Run it once: go test -run '^$' -bench BenchmarkReplication -benchtime 1x.
func BenchmarkReplication(b *testing.B) {
	rows := envInt("DRPLANE_BENCH_ROWS", benchRows)
	lagSeconds := envInt("DRPLANE_BENCH_LAG_SECONDS", benchLagSeconds)
	lagRate := envInt("DRPLANE_BENCH_LAG_RATE", benchLagRate)
	lagBatch := envInt("DRPLANE_BENCH_LAG_BATCH", benchLagBatch)
	bed := startBed(b)
	a1, b1 := bed.dcs[dcA1], bed.dcs[dcB1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	modes := []benchMode{{"single-row", 1, rows}, {fmt.Sprintf("%d-row", benchBatchRows), benchBatchRows, 5 * rows}}
	idBase := int64(0)
	spec := func(m benchMode) loadSpec {
		idBase += 1_000_000
		return loadSpec{dc: a1, writers: benchWriters, idBase: idBase, rows: m.rows, batch: m.batch, oneUser: true}
	}

	raw := map[string]float64{}
	for _, mode := range modes {
		cpu := bed.cpuMeter()
		res := bed.runLoad(ctx, spec(mode)).wait(b)
		raw[mode.name] = res.rate()
		b.Logf("raw %s: %s → %.0f rows/s; CPU ms per 1000 rows: %s", mode.name, res, res.rate(), cpu.per(mode.rows))
		b.ReportMetric(raw[mode.name], mode.name+"-raw-rows/s")
		bed.reset(b)
	}

	bed.startServices()
	for _, mode := range modes {
		bed.reset(b)
		m := bed.marks(b)
		cpu := bed.cpuMeter()
		res := bed.runLoad(ctx, spec(mode)).wait(b)
		bed.waitRows(ctx, b, dcB1, mode.rows)
		bed.waitIdle(b)
		apply := bed.applyRate(ctx, b, dcB1)
		b.Logf("replicated %s: source %s → %.0f rows/s in dc-a1; %d requests; applied in dc-b1 at %.0f rows/s; ratio %.2f; CPU ms per 1000 rows: %s",
			mode.name, res, res.rate(), bed.marks(b).out[dcA1]-m.out[dcA1], apply, apply/raw[mode.name], cpu.per(mode.rows))
		b.ReportMetric(apply, mode.name+"-apply-rows/s")
		b.ReportMetric(apply/raw[mode.name], mode.name+"-ratio")

		bed.reset(b)
		b1.collector.stop()
		res = bed.runLoad(ctx, spec(mode)).wait(b)
		bed.waitRows(ctx, b, dcA2, mode.rows)
		b1.collector.start()
		bed.waitRows(ctx, b, dcB1, mode.rows)
		bed.waitIdle(b)
		catchUp := bed.applyRate(ctx, b, dcB1)
		b.Logf("catch-up %s: %d rows written in %s while dc-b1's collector was stopped, then applied at %.0f rows/s; ratio %.2f",
			mode.name, mode.rows, res.ended.Sub(res.began).Round(time.Millisecond), catchUp, catchUp/raw[mode.name])
		b.ReportMetric(catchUp, mode.name+"-catchup-rows/s")
		b.ReportMetric(catchUp/raw[mode.name], mode.name+"-catchup-ratio")
	}

	bed.reset(b)
	lags, achieved := bed.measureLag(ctx, b, a1, lagRate, lagBatch, lagSeconds)
	p50, p99, maxLag := percentile(lags, 0.50), percentile(lags, 0.99), percentile(lags, 1)
	b.Logf("lag at %d rows/s (%d-row transactions, achieved %.0f rows/s) for %d s: %d rows, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		lagRate, lagBatch, achieved, lagSeconds, len(lags), p50, p99, maxLag)
	if achieved < 0.95*float64(lagRate) {
		b.Errorf("the lag load reached only %.0f of %d rows/s: the figures are not at the asked rate", achieved, lagRate)
	}
	b.ReportMetric(achieved, "lag-load-rows/s")
	b.ReportMetric(p50, "lag-p50-ms")
	b.ReportMetric(p99, "lag-p99-ms")
	b.ReportMetric(maxLag, "lag-max-ms")
}

// waitRows waits until dc's table holds n rows.
func (b *bed) waitRows(ctx context.Context, tb testing.TB, dc string, n int) {
	tb.Helper()
	check.For(tb, 10*time.Minute, pollEvery, func() error {
		got, err := b.tableRows(ctx, dc)
		if err != nil {
			return err
		}
		return check.That(got == int64(n), "%s", fmt.Sprintf("%d rows in %s", n, dc))
	})
}

// cpuMeter reads the CPU time of the bed's processes (Linux /proc), from a
// start to the call of per.
type cpuMeter struct {
	pids  map[string][]int
	start map[string]float64
}

// cpuMeter starts a measurement: mariadbd per DC, reship and collector
// (all DCs), and this process (NATS servers, etcd, the load).
func (b *bed) cpuMeter() *cpuMeter {
	c := &cpuMeter{pids: map[string][]int{"test process (NATS, etcd, load)": {os.Getpid()}}, start: map[string]float64{}}
	for _, name := range dcNames() {
		d := b.dcs[name]
		for _, in := range d.instances() {
			if in.Running() {
				c.pids["mariadbd "+name] = append(c.pids["mariadbd "+name], in.Pid())
			}
		}
		for _, svc := range []*service{d.reship, d.collector} {
			if svc != nil && svc.running() {
				c.pids[svc.name+" "+name] = []int{svc.cmd.Process.Pid}
			}
		}
	}
	for k := range c.pids {
		c.start[k] = c.read(k)
	}
	return c
}

func (c *cpuMeter) read(k string) float64 {
	total := 0.0
	for _, pid := range c.pids[k] {
		total += procCPU(pid)
	}
	return total
}

// per renders the CPU milliseconds each part used per 1000 rows.
func (c *cpuMeter) per(rows int) string {
	keys := make([]string, 0, len(c.pids))
	for k := range c.pids {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	sum := 0.0
	for _, k := range keys {
		ms := (c.read(k) - c.start[k]) * 1000 / float64(rows) * 1000
		sum += ms
		parts = append(parts, fmt.Sprintf("%s %.0f", k, ms))
	}
	return fmt.Sprintf("total %.0f — %s", sum, strings.Join(parts, ", "))
}

// procCPU is a process's user plus system CPU seconds (0 when unreadable).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// measureLag runs a paced load of batch-row transactions in d and returns
// each row's lag to visibility in dc-b1, in milliseconds, and the rate the
// load achieved.
func (b *bed) measureLag(ctx context.Context, tb testing.TB, d *dc, rate, batch, seconds int) ([]float64, float64) {
	tb.Helper()
	var ids atomic.Int64
	ids.Store(9_000_000)
	total := rate * seconds
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	l := b.runLoad(lctx, loadSpec{dc: d, writers: benchWriters, rows: total, rate: float64(rate), batch: batch, oneUser: true, ids: &ids})
	db := b.dcs[dcB1].app()
	seen := map[int64]bool{}
	var lags []float64
	low := int64(9_000_000) // every id up to low was seen
	deadline := time.Now().Add(time.Duration(seconds)*time.Second + 2*time.Minute)
	for len(lags) < total {
		if time.Now().After(deadline) {
			tb.Fatalf("only %d of %d rows reached dc-b1", len(lags), total)
		}
		began := time.Now()
		found, err := newRows(ctx, db, low)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range found {
			if seen[r.id] {
				continue
			}
			seen[r.id] = true
			lags = append(lags, float64(began.Sub(r.updated).Microseconds())/1000)
		}
		for seen[low+1] {
			delete(seen, low+1)
			low++
		}
		if d := 2*time.Millisecond - time.Since(began); d > 0 {
			time.Sleep(d)
		}
	}
	res := l.wait(tb)
	tb.Logf("lag load: %s → %.0f rows/s", res, res.rate())
	return lags, res.rate()
}

// seenRow is a row the lag poller found.
type seenRow struct {
	id      int64
	updated time.Time
}

// newRows returns the rows of dc-b1's table above id low with their
// updated_at.
func newRows(ctx context.Context, db *sql.DB, low int64) ([]seenRow, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, UNIX_TIMESTAMP(updated_at) FROM orders WHERE id > ? ORDER BY id", low)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []seenRow
	for rows.Next() {
		var id int64
		var ts string
		if err := rows.Scan(&id, &ts); err != nil {
			return nil, err
		}
		sec, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			return nil, fmt.Errorf("updated_at %q: %w", ts, err)
		}
		whole, frac := math.Modf(sec)
		out = append(out, seenRow{id: id, updated: time.Unix(int64(whole), int64(math.Round(frac*1e6))*1000)})
	}
	return out, rows.Err()
}

// tableRows counts a DC's orders.
func (b *bed) tableRows(ctx context.Context, dc string) (int64, error) {
	var n int64
	err := b.dcs[dc].app().QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&n)
	return n, err
}

// applyRate is the rows of dc's table over the span of the applied_at of
// dc-a1's dedup rows in dc.
func (b *bed) applyRate(ctx context.Context, tb testing.TB, dc string) float64 {
	tb.Helper()
	var micros sql.NullInt64
	err := b.dcs[dc].app().QueryRowContext(ctx,
		"SELECT TIMESTAMPDIFF(MICROSECOND, MIN(applied_at), MAX(applied_at)) FROM "+dedupTable+" WHERE origin_dc = ?", dcA1).Scan(&micros)
	if err != nil {
		tb.Fatal(err)
	}
	if !micros.Valid || micros.Int64 <= 0 {
		tb.Fatalf("no span of applied requests in %s", dc)
	}
	rows, err := b.tableRows(ctx, dc)
	if err != nil {
		tb.Fatal(err)
	}
	return float64(rows) / (float64(micros.Int64) / 1e6)
}

// percentile returns the p-quantile of xs (nearest rank).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
