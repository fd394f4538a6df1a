package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

func TestDeleteBefore(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	out := audit.NewOutbox(st)
	cutoff := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(at time.Time, seq uint64) audit.Event {
		return audit.Event{ID: audit.NewID(at, "w/1", seq), Time: at, Actor: "a", Action: "x.y", Outcome: audit.OutcomeOK}
	}
	var old []audit.Event
	for i := range 300 { // more than one page
		old = append(old, mk(cutoff.Add(-time.Duration(300-i)*time.Second), uint64(i)))
	}
	atCutoff := mk(cutoff, 1000)
	later := mk(cutoff.Add(time.Millisecond), 1001)
	// An id from before the cutoff whose recorded time is after it stays.
	skewed := mk(cutoff.Add(time.Minute), 1002)
	skewed.ID = audit.NewID(cutoff.Add(-time.Minute), "w/2", 1)
	for _, e := range append(old, atCutoff, later, skewed) {
		require.NoError(t, out.Put(t.Context(), e))
	}
	// Not an event, in the expired key range: deleted too.
	_, err := st.Client().Put(t.Context(), out.Prefix()+audit.NewID(cutoff.Add(-time.Hour), "junk", 0), "not json")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out.Prefix(), st.Key("audit-outbox")))

	n, err := out.DeleteBefore(t.Context(), cutoff)
	require.NoError(t, err)
	assert.Equal(t, len(old)+1, n)
	left, err := out.List(t.Context(), 0)
	require.NoError(t, err)
	var ids []string
	for _, e := range left {
		ids = append(ids, e.ID)
	}
	assert.ElementsMatch(t, []string{atCutoff.ID, later.ID, skewed.ID}, ids)

	n, err = out.DeleteBefore(t.Context(), cutoff)
	require.NoError(t, err)
	assert.Zero(t, n, "idempotent")
}

func TestNewIDSortsByTime(t *testing.T) {
	a := audit.NewID(time.Date(2025, 3, 1, 9, 59, 59, 999_999_999, time.UTC), "zz", 9)
	b := audit.NewID(time.Date(2025, 3, 1, 10, 0, 0, 0, time.FixedZone("x", 0)), "aa", 1)
	assert.Less(t, a, b)
	assert.Equal(t, "20250301T100000.000000000Z-aa-1", b)
}
