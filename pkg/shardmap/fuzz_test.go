package shardmap_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
)

// FuzzLookup routes arbitrary keys through default maps of 1 to 4096 shards,
// as HASH and as RANGE maps, and checks every route against a scan of all
// shards.
func FuzzLookup(f *testing.F) {
	f.Add([]byte("42"), uint16(64), false)
	f.Add([]byte("user-1"), uint16(4096), false)
	f.Add([]byte(""), uint16(1), false)
	f.Add([]byte("18446744073709551615"), uint16(3), true)
	f.Add([]byte("18446744073709551616"), uint16(7), true)
	f.Add([]byte("0000123"), uint16(100), true)
	f.Add([]byte("-1"), uint16(2), true)
	f.Fuzz(func(t *testing.T, key []byte, n uint16, rangeFn bool) {
		m, _ := labMap(t, int(n)%4096+1)
		if rangeFn {
			m.Function = shardmap.Range
		}
		tbl, err := shardmap.Compile(m)
		require.NoError(t, err)

		r, err := tbl.Lookup(key)
		rs, errs := tbl.LookupString(string(key))
		require.Equal(t, r, rs, "Lookup and LookupString agree")
		require.Equal(t, err, errs)

		var p uint64
		if rangeFn {
			// strconv.ParseUint in base 10 accepts exactly the documented
			// RANGE keys: ASCII digits only, leading zeros allowed, < 2^64.
			want, perr := strconv.ParseUint(string(key), 10, 64)
			if perr != nil {
				require.ErrorIs(t, err, shardmap.ErrBadKey, "key %q", key)
				return
			}
			require.NoError(t, err, "key %q", key)
			p = want
		} else {
			require.NoError(t, err)
			p = shardmap.HashKey(key)
		}
		got, ok := shardmap.Point(m.Function, key)
		require.True(t, ok)
		require.Equal(t, p, got)
		checkRoute(t, m, p, r)
	})
}

// fuzzMap builds a map of up to 8 shards from data. The ranges start as a
// cover of the space cut at values taken from data, and each shard may then
// be disturbed (bounds moved, an id repeated, an unknown or empty DC, an
// unknown state), so that valid and nearly valid maps both come up.
func fuzzMap(data []byte) shardmap.Map {
	take := func(n int) []byte {
		out := make([]byte, n)
		copy(out, data)
		data = data[min(n, len(data)):]
		return out
	}
	head := take(2)
	m := shardmap.Map{Keyspace: "orders", Function: shardmap.Hash}
	switch head[0] % 8 {
	case 1:
		m.Function = shardmap.Range
	case 2:
		m.Function = "MODULO"
	case 3:
		m.Keyspace = "payments"
	}
	n := int(head[1] % 9)
	type raw struct {
		cut                                   uint64
		disturb, id, owner, backup, state, hi byte
	}
	raws := make([]raw, n)
	for i := range raws {
		b := take(14)
		raws[i] = raw{
			cut: binary.LittleEndian.Uint64(b), disturb: b[8], id: b[9],
			owner: b[10], backup: b[11], state: b[12], hi: b[13],
		}
	}
	cuts := make([]uint64, n)
	for i, r := range raws {
		cuts[i] = r.cut
	}
	if n > 0 {
		cuts[0] = 0
	}
	slices.Sort(cuts)
	dcs := []string{"dc-a1", "dc-a2", "dc-b1"}
	states := []shardmap.State{shardmap.Active, shardmap.Frozen, shardmap.Moving}
	for i, r := range raws {
		s := shardmap.Shard{ID: i, Lo: cuts[i], State: states[int(r.state)%len(states)]}
		if i+1 < n {
			s.Hi = cuts[i+1]
		}
		s.Owner = dcs[int(r.owner)%len(dcs)]
		s.Backup = dcs[(int(r.owner)+1+int(r.backup)%2)%len(dcs)]
		if r.disturb >= 0xc0 { // a quarter of the shards are disturbed
			switch r.disturb % 16 {
			case 0:
				s.Lo += uint64(r.hi)
			case 1:
				s.Hi -= uint64(r.hi)
			case 2:
				s.Hi = 0
			case 3:
				s.Lo = r.cut
			case 4:
				s.Hi = r.cut
			case 5:
				s.ID = int(r.id%4) - 1
			case 6:
				s.Backup = s.Owner
			case 7:
				s.Backup = ""
			case 8:
				s.Owner = ""
			case 9:
				s.Owner = "dc-x"
			case 10:
				s.Backup = "dc-y"
			case 11:
				s.State = ""
			case 12:
				s.State = "BOGUS"
			case 13:
				s.Revision = int64(r.hi) - 128
			}
		}
		m.Shards = append(m.Shards, s)
	}
	if n > 1 {
		k := int(head[0]>>3) % n
		m.Shards = append(m.Shards[k:], m.Shards[:k]...)
	}
	return m
}

// landsOnce reports whether every probe point of m lies in exactly one shard.
func landsOnce(m shardmap.Map) bool {
	for _, p := range probes(m) {
		if len(reference(m, p)) != 1 {
			return false
		}
	}
	return true
}

func rangeErrors(err error) []string {
	var ve *shardmap.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	for _, fe := range ve.Errs {
		// Range errors read "gap: ...", "range [lo, hi) overlaps ..." or
		// "range [lo, hi) is empty: ...".
		if strings.HasPrefix(fe.Msg, "gap: ") || strings.HasPrefix(fe.Msg, "range [") {
			out = append(out, fe.Error())
		}
	}
	return out
}

// checkMapProperties asserts what must hold for any map: errors are typed,
// a map that compiles routes every point to exactly the one shard that holds
// it, and a map whose ranges do cover the space once draws no range error.
func checkMapProperties(t *testing.T, m shardmap.Map, validateErr error) {
	t.Helper()
	if validateErr != nil {
		require.ErrorIs(t, validateErr, shardmap.ErrInvalid)
		var ve *shardmap.ValidationError
		require.ErrorAs(t, validateErr, &ve)
		require.NotEmpty(t, ve.Errs)
	}
	tbl, err := shardmap.Compile(m)
	if validateErr == nil {
		require.NoError(t, err, "a map that validates compiles")
	}
	if err != nil {
		require.ErrorIs(t, validateErr, shardmap.ErrInvalid, "what Compile rejects, Validate rejects")
		require.ErrorIs(t, err, shardmap.ErrInvalid)
	} else {
		for _, p := range probes(m) {
			checkRoute(t, m, p, tbl.LookupPoint(p))
		}
	}
	empty := false
	for _, s := range m.Shards {
		if s.Hi != 0 && s.Hi <= s.Lo {
			empty = true
		}
	}
	if len(m.Shards) == 0 || len(m.Shards) > 8 || (validateErr != nil && strings.Contains(validateErr.Error(), "more errors not shown")) {
		return
	}
	if landsOnce(m) && !empty {
		require.Empty(t, rangeErrors(validateErr), "the ranges cover the space exactly once")
	} else {
		require.NotEmpty(t, rangeErrors(validateErr), "ranges with a gap, an overlap or an empty range: %+v", m.Shards)
	}
}

// FuzzValidate checks Validate and Compile on generated maps: they never
// panic, a map that validates routes every point, and range errors are
// reported exactly when the ranges do not cover the space once.
func FuzzValidate(f *testing.F) {
	_, topo := labMap(f, 1)
	f.Add([]byte{})
	f.Add([]byte{0, 1})
	f.Add([]byte{0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 0, 1, 1, 1, 1, 0})
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 0x80, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 10, 1, 1, 1, 1, 0})
	f.Add([]byte{0x19, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 12, 3, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fuzzMap(data)
		checkMapProperties(t, m, m.Validate(topo))
	})
}

// FuzzDecodeMap decodes arbitrary bytes as a stored map: decoding and
// validating never panic, a map that validates routes every point and
// survives an encode/decode round trip unchanged.
func FuzzDecodeMap(f *testing.F) {
	m, topo := labMap(f, 4)
	valid, err := json.Marshal(m)
	require.NoError(f, err)
	f.Add(valid)
	f.Add([]byte(`{"keyspace":"orders","function":"RANGE","shards":[{"id":0,"lo":"0","hi":"0","owner":"dc-a1","backup":"dc-b1","state":"ACTIVE","revision":0}]}`))
	f.Add([]byte(`{"keyspace":"orders","function":"HASH","shards":[{"id":0,"lo":"0","hi":"10","owner":"dc-a1","backup":"dc-b1","state":"ACTIVE"},{"id":1,"lo":"5","hi":"0","owner":"dc-b1","backup":"dc-a1","state":"FROZEN"}]}`))
	f.Add([]byte(`{"keyspace":"orders","function":"HASH","shards":[{"id":0,"lo":0,"hi":0}]}`))
	f.Add([]byte(`{"keyspace":"orders","shards":null}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m shardmap.Map
		if json.Unmarshal(data, &m) != nil {
			return
		}
		err := m.Validate(topo)
		checkMapProperties(t, m, err)
		if err != nil {
			return
		}
		enc, err := json.Marshal(m)
		require.NoError(t, err)
		var back shardmap.Map
		require.NoError(t, json.Unmarshal(enc, &back))
		require.Equal(t, m.Clone(), back.Clone())
		require.NoError(t, back.Validate(topo))
	})
}
