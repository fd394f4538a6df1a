package router_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/router/routertest"
)

// userKeys returns n decimal user ids, as the lab's orders keyspace routes.
func userKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(100_000 + i*7919)
	}
	return keys
}

// readyRouter returns a running router on a fake coordinator serving
// "orders" with the given number of shards, dc-a1's master known.
func readyRouter(tb testing.TB, shards int) *router.Router {
	tb.Helper()
	t, ok := tb.(*testing.T)
	srv := routertest.Start(tb, routertest.Options{})
	srv.Set(routertest.SetMaster(routertest.HashTable("orders", "main", shards, 1, dcA1, dcB1), dcA1, "a1-db1", "127.0.0.1:1", 1))
	opts := router.Options{
		Keyspaces: []string{"orders"},
		DB:        func(m router.Master) (*sql.DB, error) { return sql.Open("mysql", "app:pw@tcp("+m.Addr+")/shop") },
	}
	var r *router.Router
	if ok {
		r = startRouter(t, srv, opts).Router
		waitReady(t, r)
		return r
	}
	// Benchmarks: same, without the testing.T helpers.
	opts.Conn, opts.DC = srv.Dial(), dcA1
	r, err := router.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	<-r.Ready()
	return r
}

func TestRouteDoesNotAllocate(t *testing.T) {
	r := readyRouter(t, 64)
	keys := userKeys(1024)
	i := 0
	allocs := testing.AllocsPerRun(10_000, func() {
		if _, err := r.Route("orders", keys[i%len(keys)]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	require.Zero(t, allocs, "Route allocates on the hit path")

	// WriteDB on its success path (handle cached) does not allocate either.
	ctx := context.Background()
	local := make([]string, 0, len(keys))
	for _, k := range keys {
		if rt, err := r.Route("orders", k); err == nil && rt.Local {
			local = append(local, k)
		}
	}
	require.NotEmpty(t, local)
	_, _, err := r.WriteDB(ctx, "orders", local[0])
	require.NoError(t, err)
	allocs = testing.AllocsPerRun(10_000, func() {
		if _, _, err := r.WriteDB(ctx, "orders", local[i%len(local)]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	t.Logf("WriteDB (local, handle cached): %.1f allocs/op", allocs)
	require.Zero(t, allocs, "WriteDB allocates on the local path")
}

// BenchmarkRoute routes decimal user ids through HASH tables of 64 and 4096
// shards, on one goroutine and in parallel; and WriteDB's local path.
func BenchmarkRoute(b *testing.B) {
	keys := userKeys(1024)
	for _, shards := range []int{64, 4096} {
		r := readyRouter(b, shards)
		name := "shards=" + strconv.Itoa(shards)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := r.Route("orders", keys[i&(len(keys)-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := r.Route("orders", keys[i&(len(keys)-1)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
	r := readyRouter(b, 64)
	var local []string
	for _, k := range keys {
		if rt, _ := r.Route("orders", k); rt.Local {
			local = append(local, k)
		}
	}
	b.Run("writedb/local", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		i := 0
		for b.Loop() {
			if _, _, err := r.WriteDB(ctx, "orders", local[i%len(local)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
