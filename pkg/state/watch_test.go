package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/state"
)

// next receives one event or fails the test after a deadline.
func next[T any](t *testing.T, ch <-chan state.Event[T]) state.Event[T] {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch channel closed early")
		return ev
	case <-time.After(opTimeout):
		t.Fatal("no watch event within the deadline")
	}
	panic("unreachable")
}

func TestWatchDeliversTypedEventsInOrder(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	cli := st.Client()

	// Start from a known revision so no event can be missed between the
	// watch being set up and the writes.
	base, err := cli.Get(ctx, "/")
	require.NoError(t, err)
	wctx, stop := context.WithCancel(ctx)
	ch := state.Watch[state.MasterRecord](wctx, st, st.Prefix("masters", "dc-a1"), true, base.Header.Revision+1)

	rev1, err := st.PutMaster(ctx, masterRec("a1-db1", 1), 0, nil)
	require.NoError(t, err)
	// Outside the watched prefix: never delivered.
	_, err = st.PutMaster(ctx, state.MasterRecord{DC: "dc-b1", Cluster: "main", Instance: "b1-db1"}, 0, nil)
	require.NoError(t, err)
	// Not JSON: skipped.
	_, err = cli.Put(ctx, st.Key("masters", "dc-a1", "garbage"), "{")
	require.NoError(t, err)
	rev2, err := st.PutMaster(ctx, masterRec("a1-db2", 2), rev1, nil)
	require.NoError(t, err)
	del, err := cli.Delete(ctx, st.Key("masters", "dc-a1", "main"))
	require.NoError(t, err)
	require.EqualValues(t, 1, del.Deleted)

	key := st.Key("masters", "dc-a1", "main")
	ev := next(t, ch)
	assert.Equal(t, key, ev.Key)
	assert.False(t, ev.Deleted)
	assert.Equal(t, rev1, ev.Rev)
	assert.Equal(t, "a1-db1", ev.Value.Instance)
	assert.Equal(t, int64(1), ev.Value.Term)

	ev = next(t, ch)
	assert.Equal(t, key, ev.Key, "the undecodable value and the other DC are skipped")
	assert.False(t, ev.Deleted)
	assert.Equal(t, rev2, ev.Rev)
	assert.Equal(t, "a1-db2", ev.Value.Instance)

	ev = next(t, ch)
	assert.Equal(t, key, ev.Key)
	assert.True(t, ev.Deleted)
	assert.Equal(t, del.Header.Revision, ev.Rev)
	assert.Zero(t, ev.Value)

	// Cancelling the context closes the channel.
	stop()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		select {
		case _, ok := <-ch:
			return check.That(!ok, "the channel must close when ctx ends")
		default:
			return check.That(false, "the channel must close when ctx ends")
		}
	})
}

func TestWatchSingleKeyFromNow(t *testing.T) {
	st := newStore(t)
	ctx := opCtx(t)
	key := st.Key("topology")

	// A value written before the watch is not replayed with fromRev 0.
	_, err := st.PutTopology(ctx, sampleTopology(), 0)
	require.NoError(t, err)
	ch := state.Watch[map[string]any](ctx, st, key, false, 0)

	// The watch is set up asynchronously: write until the first change shows.
	changed := sampleTopology()
	changed.DCs[0].State = "DOWN"
	var ev state.Event[map[string]any]
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		_, err := st.PutTopology(ctx, changed, -1)
		require.NoError(t, err)
		select {
		case ev = <-ch:
			return nil
		case <-time.After(50 * time.Millisecond):
			return errors.New("no event within 50ms of a write")
		}
	})
	assert.Equal(t, key, ev.Key)
	dcs := ev.Value["dcs"].([]any)
	assert.Equal(t, "DOWN", dcs[0].(map[string]any)["state"], "the first event is a write made after the watch started")
}
