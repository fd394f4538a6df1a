package shardmap_test

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/drplane/drplane/pkg/shardmap"
)

// BenchmarkLookup routes user ids (decimal, as the lab's orders keyspace
// does) through HASH tables of 64 and 4096 shards and a RANGE table of 4096.
func BenchmarkLookup(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(strconv.FormatUint(rng.Uint64()>>uint(rng.IntN(40)), 10))
	}
	for _, tc := range []struct {
		name string
		m    shardmap.Map
	}{
		{"hash/shards=64", hashMapOf(b, 64)},
		{"hash/shards=4096", hashMapOf(b, 4096)},
		{"range/shards=4096", rangeMap(rng, 4096)},
	} {
		tbl, err := shardmap.Compile(tc.m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink shardmap.Route
			i := 0
			for b.Loop() {
				r, err := tbl.Lookup(keys[i&(len(keys)-1)])
				if err != nil {
					b.Fatal(err)
				}
				sink = r
				i++
			}
			_ = sink
		})
	}
}

func hashMapOf(b *testing.B, n int) shardmap.Map {
	m, _ := labMap(b, n)
	return m
}
