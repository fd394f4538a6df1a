package reship

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkCatchUp measures how fast reship ships a backlog: rows are
// written while no reship runs, then one starts at the beginning of the
// binlog, and the time until its stored checkpoint reaches the master's
// position is reported (engine start-up included). Run it with
//
//	go test ./internal/reship -run '^$' -bench CatchUp -benchtime 1x
func BenchmarkCatchUp(b *testing.B) {
	for _, shape := range []struct {
		name       string
		txns, rows int
	}{
		{"1row_per_txn", 40000, 1},
		{"100rows_per_txn", 2000, 100},
	} {
		b.Run(shape.name, func(b *testing.B) {
			for range b.N {
				catchUp(b, shape.txns, shape.rows)
			}
		})
	}
}

func catchUp(b *testing.B, txns, rows int) {
	b.StopTimer()
	bd := startBed(b, 1, "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0")
	db := bd.db.AppDB(bd.db.Master)
	db.SetMaxOpenConns(4)
	errs := make(chan error, 4)
	per := txns / 4
	for w := range 4 {
		go func() {
			for i := w * per; i < (w+1)*per; i++ {
				vals := make([]string, rows)
				for r := range rows {
					id := i*rows + r + 1
					vals[r] = fmt.Sprintf("(%d, %d, %d, 'bench')", id, id%100000, id)
				}
				if _, err := db.Exec("INSERT INTO orders (id, user_id, amount_cents, note) VALUES " + strings.Join(vals, ",")); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(b, <-errs)
	}
	b.StartTimer()
	began := time.Now()
	e := bd.startEngineWindow(StartEarliest, 1024)
	bd.waitCaughtUp(bd.db.Master)
	took := time.Since(began)
	b.StopTimer()
	events := e.counter("drplane_reship_events_total")
	b.ReportMetric(float64(txns*rows)/took.Seconds(), "rows/s")
	b.ReportMetric(events/took.Seconds(), "events/s")
	b.ReportMetric(float64(txns)/took.Seconds(), "txns/s")
	e.stop()
}
