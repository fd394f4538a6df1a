package audit_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

// TestOutboxBoundsCallerFields: an event whose caller-supplied fields are
// huge (a forwarded address, a reason, the refused call's error, many
// parameters) is stored in etcd at a bounded size, through Put and through
// PutOp, and says what was cut.
func TestOutboxBoundsCallerFields(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	out := audit.NewOutbox(st)
	huge := strings.Repeat("é", 200<<10) // 400 KiB, multi-byte runes
	params := map[string]string{"peer": huge, "reason": huge}
	for i := range 100 {
		params[fmt.Sprintf("p%03d", i)] = "v"
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := audit.Event{
		ID: audit.NewID(now, "w/1", 1), Time: now, Actor: "token-sha256:" + huge[:10], Action: "shard.move",
		Target: huge, Params: params, Outcome: audit.OutcomeDenied, Error: huge,
	}
	require.NoError(t, out.Put(t.Context(), ev))
	ev2 := ev
	ev2.ID = audit.NewID(now, "w/1", 2)
	op, err := out.PutOp(ev2)
	require.NoError(t, err)
	_, err = st.Client().Txn(t.Context()).Then(op).Commit()
	require.NoError(t, err)

	// Every string field at most MaxFieldBytes, plus names and JSON.
	limit := (4+audit.MaxParams+1)*(audit.MaxFieldBytes+80) + 512
	resp, err := st.Client().Get(t.Context(), st.Prefix("audit-outbox"), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 2)
	for _, kv := range resp.Kvs {
		assert.LessOrEqual(t, len(kv.Value), limit, "stored event of %d bytes", len(kv.Value))
	}
	evs, err := out.List(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for _, e := range evs {
		assert.LessOrEqual(t, len(e.Target), audit.MaxFieldBytes)
		assert.True(t, utf8.ValidString(e.Target), "cut at a rune boundary")
		assert.Contains(t, e.Target, "bytes cut")
		assert.Contains(t, e.Error, "bytes cut")
		assert.LessOrEqual(t, len(e.Params), audit.MaxParams+1)
		assert.Equal(t, fmt.Sprint(102-audit.MaxParams), e.Params["params_dropped"])
		assert.Equal(t, "shard.move", e.Action)
	}
}
