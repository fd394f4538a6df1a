package handoff

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

type mark struct {
	N int `json:"n"`
}

// TestFollow checks the handoff waits' reader on real etcd: values present
// before the call count, changes made during it are seen as they happen
// (puts and deletes), and at the deadline it returns what it saw with
// done false and no error.
func TestFollow(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "/test/"+t.Name())
	ctx := t.Context()
	prefix := st.Prefix("marks")
	put := func(k string, n int) {
		_, err := state.Put(ctx, st, prefix+k, mark{N: n}, state.PutOptions{PrevRev: -1})
		require.NoError(t, err)
	}
	put("a", 1)
	put("gone", 1)
	sum := func(m map[string]mark) int {
		n := 0
		for _, v := range m {
			n += v.N
		}
		return n
	}

	t.Log("changes during the wait: a put raises the sum, a delete lowers it")
	var once sync.Once
	vals, ok, err := follow(ctx, st, prefix, true, time.Now().Add(30*time.Second), func(m map[string]mark) bool {
		// After the first read, so that only the watch can see them.
		once.Do(func() {
			go func() {
				_, _ = st.Client().Delete(ctx, prefix+"gone")
				for i := range 3 {
					_, _ = state.Put(ctx, st, prefix+"k"+strconv.Itoa(i), mark{N: 10}, state.PutOptions{PrevRev: -1})
				}
			}()
		})
		_, stale := m[prefix+"gone"]
		return sum(m) == 31 && !stale
	})
	require.NoError(t, err)
	require.True(t, ok)
	assert.Len(t, vals, 4)

	t.Log("the deadline: what was seen, not done, no error")
	began := time.Now()
	vals, ok, err = follow(ctx, st, prefix, true, time.Now().Add(300*time.Millisecond), func(m map[string]mark) bool { return sum(m) > 1000 })
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, 31, sum(vals))
	assert.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)

	t.Log("one key, done at once when it already holds")
	vals, ok, err = follow(ctx, st, prefix+"a", false, time.Now().Add(time.Second), func(m map[string]mark) bool { return m[prefix+"a"].N == 1 })
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Len(t, vals, 1)

	t.Log("a cancelled context is an error")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = follow(cctx, st, prefix, true, time.Now().Add(time.Second), func(map[string]mark) bool { return false })
	require.ErrorIs(t, err, context.Canceled)
}
