package analysis_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

func pos(t *testing.T, s string) gtid.Pos {
	t.Helper()
	p, err := gtid.ParsePos(s)
	require.NoError(t, err)
	return p
}

func TestErrant(t *testing.T) {
	for _, tc := range []struct{ name, replica, master, want string }{
		{"identical", "0-1-10,1-2-5", "0-1-10,1-2-5", ""},
		{"behind in every domain", "0-1-9,1-2-4", "0-1-10,1-2-5", ""},
		{"empty replica", "", "0-1-10", ""},
		{"ahead in one domain", "0-1-11,1-2-5", "0-1-10,1-2-5", "0-1-11"},
		{"same sequence, other server id", "0-3-10,1-2-4", "0-1-10,1-2-5", "0-3-10"},
		{"domain the master lacks", "0-1-9,2-5-1", "0-1-10", "2-5-1"},
		{"everything against an empty master", "0-1-1,1-1-1", "", "0-1-1,1-1-1"},
		{"several domains at once", "0-1-10,1-4-6,2-2-3", "0-1-9,1-2-6,2-2-3", "0-1-10,1-4-6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := analysis.Errant(pos(t, tc.replica), pos(t, tc.master))
			assert.Equal(t, tc.want, got.String())
			assert.Equal(t, tc.want == "", len(got) == 0)
		})
	}
}

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		count          int64
		gtids          string
	}{
		{"nothing missing", "0-1-100,1-2-50", "0-1-100,1-2-50", 0, ""},
		{"new ahead", "0-1-5", "0-2-9", 0, ""},
		{"one domain behind, new master wrote nothing yet", "0-1-105,1-2-50", "0-1-100,1-2-50", 5, "0-1-105"},
		{"summed over domains", "0-1-105,1-2-50,2-3-7", "0-2-100,1-2-48", 14, "0-1-105,1-2-50,2-3-7"},
		{"new has domains old lacks", "0-1-10", "0-1-4,5-5-99", 6, "0-1-10"},
		{"saturates", "0-1-18446744073709551615", "", math.MaxInt64, "0-1-18446744073709551615"},
		{"saturates on the sum", "0-1-9223372036854775807,1-1-9223372036854775807", "", math.MaxInt64,
			"0-1-9223372036854775807,1-1-9223372036854775807"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, g := analysis.Missing(pos(t, tc.old), pos(t, tc.new))
			assert.Equal(t, tc.count, n)
			assert.Equal(t, tc.gtids, g)
		})
	}
}
