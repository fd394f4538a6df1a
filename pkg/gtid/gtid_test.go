package gtid

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePos(t *testing.T) {
	tests := []struct {
		in      string
		want    Pos
		str     string
		wantErr bool
	}{
		{in: "", want: Pos{}, str: ""},
		{in: "0-1-42", want: Pos{{0, 1, 42}}, str: "0-1-42"},
		{in: "7-3-1, 0-1-42", want: Pos{{0, 1, 42}, {7, 3, 1}}, str: "0-1-42,7-3-1"},
		{in: "0-1-18446744073709551615", want: Pos{{0, 1, 18446744073709551615}}, str: "0-1-18446744073709551615"},
		{in: "0-1", wantErr: true},
		{in: "0-1-x", wantErr: true},
		{in: "-1-1-1", wantErr: true},
		{in: "0-1-2,0-2-3", wantErr: true},
		{in: "0-1-2,", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePos(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrBad)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.str, got.String())
		})
	}
}

func TestPosContains(t *testing.T) {
	mustPos := func(s string) Pos {
		p, err := ParsePos(s)
		require.NoError(t, err)
		return p
	}
	tests := []struct {
		p, q string
		want bool
	}{
		{"0-1-10", "0-1-10", true},
		{"0-1-10", "0-1-9", true},
		{"0-1-9", "0-1-10", false},
		{"0-2-10", "0-1-10", true}, // a new master continues the domain's sequence
		{"0-1-10", "", true},
		{"", "0-1-1", false},
		{"0-1-10,1-5-3", "1-5-3", true},
		{"0-1-10", "0-1-5,1-5-3", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, mustPos(tt.p).Contains(mustPos(tt.q)), "%q contains %q", tt.p, tt.q)
	}
	seq, ok := mustPos("0-1-10,1-5-3").Seq(1)
	require.True(t, ok)
	require.Equal(t, uint64(3), seq)
	_, ok = mustPos("0-1-10").Seq(1)
	require.False(t, ok)
}

func TestParse(t *testing.T) {
	g, err := Parse(" 3-7-42 ")
	require.NoError(t, err)
	require.Equal(t, GTID{Domain: 3, ServerID: 7, Seq: 42}, g)
	require.Equal(t, "3-7-42", g.String())
	for _, bad := range []string{"", "3-7", "3-7-42-1", "x-7-42", "3-7-", "4294967296-1-1"} {
		_, err := Parse(bad)
		require.ErrorIs(t, err, ErrBad, "%q", bad)
	}
}
