package ledger

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func captured(at time.Time, seq uint64, targets ...string) *drplanev1.LedgerUpdate {
	return &drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "0-1-9/3", Kind: drplanev1.LedgerUpdate_KIND_CAPTURED,
		Dc: "dc-a1", At: timestamppb.New(at), Keyspace: "orders", Shard: 3, Gtid: "0-1-9", Targets: targets, OutboundSeq: seq}
}

func reported(kind drplanev1.LedgerUpdate_Kind, dc string, at time.Time, errText string) *drplanev1.LedgerUpdate {
	return &drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "0-1-9/3", Kind: kind, Dc: dc, At: timestamppb.New(at),
		Keyspace: "orders", Shard: 3, Gtid: "0-1-9", Error: errText}
}

// permutations calls f with every order of n items.
func permutations(n int, f func([]int)) {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			f(append([]int(nil), idx...))
			return
		}
		for i := k; i < n; i++ {
			idx[k], idx[i] = idx[i], idx[k]
			rec(k + 1)
			idx[k], idx[i] = idx[i], idx[k]
		}
	}
	rec(0)
}

// fold applies facts in order (each written and read back as JSON, as the
// indexer does between batches) and derives the result.
func fold(t *testing.T, facts []*drplanev1.LedgerUpdate) *Document {
	t.Helper()
	d := newDocument("dc-a1", "0-1-9/3")
	for _, u := range facts {
		d.apply(u, u.GetAt().AsTime())
		d.derive(t0)
		raw, err := json.Marshal(d)
		require.NoError(t, err)
		d, err = decodeDocument(raw)
		require.NoError(t, err)
	}
	return d
}

func TestDocumentIgnoresFactOrder(t *testing.T) {
	tests := []struct {
		name    string
		facts   []*drplanev1.LedgerUpdate
		state   string
		pending []string
		dead    []string
		errText string
	}{
		{
			name: "applied everywhere, a capture reported twice",
			facts: []*drplanev1.LedgerUpdate{
				captured(t0, 12, "dc-a2", "dc-b1"),
				captured(t0.Add(time.Second), 40, "dc-b1", "dc-a2"),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(20*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(time.Minute), ""), // redelivered
			},
			state: StateApplied, pending: []string{}, dead: []string{},
		},
		{
			name: "one target pending",
			facts: []*drplanev1.LedgerUpdate{
				captured(t0, 12, "dc-a2", "dc-b1"),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_RETRIED, "dc-a1", t0.Add(time.Minute), ""),
			},
			state: StatePending, pending: []string{"dc-b1"}, dead: []string{},
		},
		{
			name: "dead-lettered in one target",
			facts: []*drplanev1.LedgerUpdate{
				captured(t0, 12, "dc-a2", "dc-b1"),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, "dc-b1", t0.Add(time.Second), "unknown column"),
			},
			state: StateDeadLettered, pending: []string{}, dead: []string{"dc-b1"}, errText: "dc-b1: unknown column",
		},
		{
			name: "dead letter put back and not applied yet",
			facts: []*drplanev1.LedgerUpdate{
				captured(t0, 12, "dc-a2", "dc-b1"),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, "dc-b1", t0.Add(time.Second), "unknown column"),
				reported(drplanev1.LedgerUpdate_KIND_RETRIED, "dc-b1", t0.Add(time.Hour), ""),
			},
			state: StatePending, pending: []string{"dc-b1"}, dead: []string{},
		},
		{
			name: "dead letter put back, then applied",
			facts: []*drplanev1.LedgerUpdate{
				captured(t0, 12, "dc-a2", "dc-b1"),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, "dc-b1", t0.Add(time.Second), "unknown column"),
				reported(drplanev1.LedgerUpdate_KIND_RETRIED, "dc-b1", t0.Add(time.Hour), ""),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(time.Hour+time.Second), ""),
			},
			state: StateApplied, pending: []string{}, dead: []string{},
		},
		{
			name: "capture not reported",
			facts: []*drplanev1.LedgerUpdate{
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-a2", t0.Add(10*time.Millisecond), ""),
				reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(20*time.Millisecond), ""),
			},
			state: StatePending, pending: []string{}, dead: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var first *Document
			permutations(len(tt.facts), func(order []int) {
				facts := make([]*drplanev1.LedgerUpdate, len(order))
				for i, j := range order {
					facts[i] = tt.facts[j]
				}
				d := fold(t, facts)
				assert.Equal(t, tt.state, d.State, "order %v", order)
				assert.Equal(t, tt.pending, d.PendingDCs, "order %v", order)
				assert.Equal(t, tt.dead, d.DeadLetteredDCs, "order %v", order)
				assert.Equal(t, tt.errText, d.Error, "order %v", order)
				if first == nil {
					first = d
					return
				}
				a, _ := json.Marshal(first)
				b, _ := json.Marshal(d)
				assert.JSONEq(t, string(a), string(b), "order %v gives another document", order)
			})
		})
	}
}

func TestDocumentCombinesFacts(t *testing.T) {
	d := fold(t, []*drplanev1.LedgerUpdate{
		reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(time.Minute), ""),
		captured(t0.Add(time.Second), 40, "dc-b1"),
		captured(t0, 12, "dc-a2"),
		reported(drplanev1.LedgerUpdate_KIND_APPLIED, "dc-b1", t0.Add(30*time.Second), ""),
		reported(drplanev1.LedgerUpdate_KIND_RETRIED, "dc-a1", t0.Add(time.Hour), ""),
		reported(drplanev1.LedgerUpdate_KIND_RETRIED, "dc-a1", t0.Add(time.Hour), ""), // the same retry again
	})
	assert.Equal(t, t0, d.CapturedAt, "earliest capture")
	assert.Equal(t, []string{"dc-a2", "dc-b1"}, d.Targets, "union of the targets")
	assert.Equal(t, uint64(12), d.OutboundSeq, "lowest sequence")
	assert.Equal(t, t0.Add(30*time.Second), d.AppliedAt["dc-b1"], "earliest apply")
	assert.Equal(t, 1, d.Attempts, "a retry counts once")
	assert.Equal(t, t0.Add(time.Hour), d.LastAttemptAt)
	assert.Equal(t, []string{"dc-a2"}, d.PendingDCs)

	r := d.Record()
	assert.Equal(t, drplanev1.RequestState_REQUEST_STATE_PENDING, r.GetState())
	assert.Equal(t, "orders", r.GetKeyspace())
	assert.Equal(t, int32(3), r.GetShard())
	require.Len(t, r.GetTargetStatus(), 2)
	assert.Equal(t, "dc-a2", r.GetTargetStatus()[0].GetDc())
	assert.Nil(t, r.GetTargetStatus()[0].GetAppliedAt())
	assert.Equal(t, t0.Add(30*time.Second), r.GetTargetStatus()[1].GetAppliedAt().AsTime())
}
