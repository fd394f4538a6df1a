package shardmap_test

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
)

// TestHashGolden pins the HASH function. These values are part of the wire
// contract (clients in other languages compute them): they must never change.
func TestHashGolden(t *testing.T) {
	golden := map[string]uint64{
		"":                     0xef46db3751d8e999,
		"a":                    0xd24ec4f1a98c6e5b,
		"abc":                  0x44bc2cf5ad770999,
		"42":                   0x6de6f5d076d742b9,
		"user-1":               0xa173746b114c6be8,
		"12345678901234567890": 0xebab9f9f8b4ae622,
		"The quick brown fox jumps over the lazy dog": 0x0b242d361fda71bc,
		"日本": 0x80c2e40b8486afab,
	}
	for key, want := range golden {
		assert.Equal(t, want, shardmap.HashKey([]byte(key)), "XXH64(%q)", key)
		p, ok := shardmap.PointString(shardmap.Hash, key)
		assert.True(t, ok)
		assert.Equal(t, want, p, "PointString(HASH, %q)", key)
	}
}

// TestDefaultMapGoldenRoutes pins where keys land in the default 64-shard
// map: the hash and the equal split together.
func TestDefaultMapGoldenRoutes(t *testing.T) {
	m, _ := labMap(t, 64)
	tbl, err := shardmap.Compile(m)
	require.NoError(t, err)
	golden := map[string]int{"42": 27, "user-1": 40, "abc": 17, "": 59}
	for key, want := range golden {
		r, err := tbl.LookupString(key)
		require.NoError(t, err)
		assert.Equal(t, want, r.Shard, "shard of %q", key)
		assert.Equal(t, int(shardmap.HashKey([]byte(key))>>58), r.Shard, "top 6 bits")
	}
}

// xxh64 is the XXH64 algorithm written from its specification, to check that
// the library the package uses computes exactly the documented hash.
func xxh64(in []byte, seed uint64) uint64 {
	const (
		p1 uint64 = 0x9E3779B185EBCA87
		p2 uint64 = 0xC2B2AE3D27D4EB4F
		p3 uint64 = 0x165667B19E3779F9
		p4 uint64 = 0x85EBCA77C2B2AE63
		p5 uint64 = 0x27D4EB2F165667C5
	)
	round := func(acc, lane uint64) uint64 { return bits.RotateLeft64(acc+lane*p2, 31) * p1 }
	merge := func(acc, v uint64) uint64 { return (acc^round(0, v))*p1 + p4 }
	n := uint64(len(in))
	var acc uint64
	if len(in) >= 32 {
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for len(in) >= 32 {
			v1 = round(v1, binary.LittleEndian.Uint64(in[0:]))
			v2 = round(v2, binary.LittleEndian.Uint64(in[8:]))
			v3 = round(v3, binary.LittleEndian.Uint64(in[16:]))
			v4 = round(v4, binary.LittleEndian.Uint64(in[24:]))
			in = in[32:]
		}
		acc = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) + bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		acc = merge(merge(merge(merge(acc, v1), v2), v3), v4)
	} else {
		acc = seed + p5
	}
	acc += n
	for len(in) >= 8 {
		acc ^= round(0, binary.LittleEndian.Uint64(in))
		acc = bits.RotateLeft64(acc, 27)*p1 + p4
		in = in[8:]
	}
	if len(in) >= 4 {
		acc ^= uint64(binary.LittleEndian.Uint32(in)) * p1
		acc = bits.RotateLeft64(acc, 23)*p2 + p3
		in = in[4:]
	}
	for _, b := range in {
		acc ^= uint64(b) * p5
		acc = bits.RotateLeft64(acc, 11) * p1
	}
	acc ^= acc >> 33
	acc *= p2
	acc ^= acc >> 29
	acc *= p3
	acc ^= acc >> 32
	return acc
}

func TestHashIsXXH64(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 200)
	for n := range len(buf) {
		for range 5 {
			for i := range n {
				buf[i] = byte(rng.Uint32())
			}
			key := buf[:n]
			require.Equal(t, xxh64(key, 0), shardmap.HashKey(key), "length %d", n)
		}
	}
}

func TestRangePoint(t *testing.T) {
	tests := []struct {
		key  string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"007", 7, true},
		{"0000000000000000000000000000042", 42, true},
		{"18446744073709551615", math.MaxUint64, true},
		{"18446744073709551616", 0, false},
		{"18446744073709551620", 0, false},
		{"99999999999999999999", 0, false},
		{"184467440737095516150", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1_000", 0, false},
		{"0x10", 0, false},
		{"12a", 0, false},
		{"１", 0, false}, // a full-width digit is not ASCII
	}
	for _, tc := range tests {
		p, ok := shardmap.PointString(shardmap.Range, tc.key)
		assert.Equal(t, tc.ok, ok, "%q", tc.key)
		assert.Equal(t, tc.want, p, "%q", tc.key)
		pb, okb := shardmap.Point(shardmap.Range, []byte(tc.key))
		assert.Equal(t, tc.ok, okb, "%q as bytes", tc.key)
		assert.Equal(t, tc.want, pb, "%q as bytes", tc.key)
	}
}

// rangeMap returns a RANGE map with n shards cut at random points, listed in
// random order.
func rangeMap(rng *rand.Rand, n int) shardmap.Map {
	cuts := map[uint64]bool{0: true}
	for len(cuts) < n {
		cuts[rng.Uint64()>>uint(rng.IntN(64))] = true
	}
	var los []uint64
	for c := range cuts {
		los = append(los, c)
	}
	m := shardmap.Map{Keyspace: "orders", Function: shardmap.Range, Revision: 99}
	slices.Sort(los)
	for i, lo := range los {
		var hi uint64
		if i+1 < len(los) {
			hi = los[i+1]
		}
		m.Shards = append(m.Shards, shardmap.Shard{
			ID: i, Lo: lo, Hi: hi, Owner: "dc-" + strconv.Itoa(i%3), Backup: "dc-9",
			State: []shardmap.State{shardmap.Active, shardmap.Frozen, shardmap.Moving}[i%3], Revision: int64(i % 90),
		})
	}
	rng.Shuffle(len(m.Shards), func(i, j int) { m.Shards[i], m.Shards[j] = m.Shards[j], m.Shards[i] })
	return m
}

func TestLookupMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 3, 64, 1000} {
		hashMap, _ := labMap(t, n)
		hashMap.Revision = 7
		for _, m := range []shardmap.Map{hashMap, rangeMap(rng, n)} {
			tbl, err := shardmap.Compile(m)
			require.NoError(t, err)
			require.Equal(t, n, tbl.Len())
			for _, p := range probes(m) {
				checkRoute(t, m, p, tbl.LookupPoint(p))
			}
			for range 2000 {
				p := rng.Uint64() >> uint(rng.IntN(64))
				checkRoute(t, m, p, tbl.LookupPoint(p))

				key := strconv.FormatUint(p, 10)
				r, err := tbl.LookupString(key)
				require.NoError(t, err)
				want, _ := shardmap.PointString(m.Function, key)
				checkRoute(t, m, want, r)
				rb, err := tbl.Lookup([]byte(key))
				require.NoError(t, err)
				assert.Equal(t, r, rb, "Lookup and LookupString agree")
			}
		}
	}
}

func TestLookupRangeKeys(t *testing.T) {
	m := shardmap.Map{Keyspace: "orders", Function: shardmap.Range, Shards: []shardmap.Shard{
		{ID: 10, Lo: 1000, Hi: 0, Owner: "dc-b1", State: shardmap.Active},
		{ID: 11, Lo: 0, Hi: 100, Owner: "dc-a1", State: shardmap.Active},
		{ID: 12, Lo: 100, Hi: 1000, Owner: "dc-a2", State: shardmap.Frozen},
	}}
	tbl, err := shardmap.Compile(m)
	require.NoError(t, err)
	for key, want := range map[string]int{"0": 11, "99": 11, "100": 12, "0999": 12, "1000": 10, "18446744073709551615": 10} {
		r, err := tbl.LookupString(key)
		require.NoError(t, err)
		assert.Equal(t, want, r.Shard, "key %q", key)
	}
	for _, key := range []string{"", "abc", "-5", "18446744073709551616"} {
		_, err := tbl.LookupString(key)
		require.ErrorIs(t, err, shardmap.ErrBadKey, "key %q", key)
		_, err = tbl.Lookup([]byte(key))
		require.ErrorIs(t, err, shardmap.ErrBadKey, "key %q", key)
	}
	r, ok := tbl.Shard(12)
	require.True(t, ok)
	assert.Equal(t, shardmap.Route{Shard: 12, Owner: "dc-a2", State: shardmap.Frozen}, r)
	_, ok = tbl.Shard(13)
	assert.False(t, ok)
	routes := tbl.Routes()
	assert.Equal(t, []int{11, 12, 10}, []int{routes[0].Shard, routes[1].Shard, routes[2].Shard}, "routes in range order")
}

func TestTableIsImmutable(t *testing.T) {
	m, _ := labMap(t, 4)
	m.Revision = 3
	tbl, err := shardmap.Compile(m)
	require.NoError(t, err)
	m.Shards[0].Owner = "dc-zz"
	m.Shards[0].Lo = 99
	r := tbl.LookupPoint(0)
	assert.Equal(t, "dc-a1", r.Owner, "changing the map after Compile does not change the table")
	assert.Equal(t, int64(3), r.MapRevision)
	assert.Equal(t, int64(3), tbl.Revision())
	assert.Equal(t, "orders", tbl.Keyspace())
	assert.Equal(t, shardmap.Hash, tbl.Function())
	routes := tbl.Routes()
	routes[0].Owner = "dc-zz"
	assert.Equal(t, "dc-a1", tbl.LookupPoint(0).Owner, "Routes returns a copy")
}

func TestLookupAllocationFree(t *testing.T) {
	hashMap, _ := labMap(t, 4096)
	hashTbl, err := shardmap.Compile(hashMap)
	require.NoError(t, err)
	rangeTbl, err := shardmap.Compile(rangeMap(rand.New(rand.NewPCG(7, 8)), 4096))
	require.NoError(t, err)

	key := []byte("123456789")
	skey := "987654321"
	var sink shardmap.Route
	for name, fn := range map[string]func(){
		"hash Lookup":        func() { sink, _ = hashTbl.Lookup(key) },
		"hash LookupString":  func() { sink, _ = hashTbl.LookupString(skey) },
		"range Lookup":       func() { sink, _ = rangeTbl.Lookup(key) },
		"range LookupString": func() { sink, _ = rangeTbl.LookupString(skey) },
		"range bad key":      func() { sink, _ = rangeTbl.LookupString("not-a-number") },
		"LookupPoint":        func() { sink = hashTbl.LookupPoint(12345) },
	} {
		assert.Zero(t, testing.AllocsPerRun(1000, fn), name)
	}
	_ = sink
}
