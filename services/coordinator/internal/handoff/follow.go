package handoff

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// follow reads the values at key (every key under it when prefix is set)
// and then follows their changes on an etcd watch, until done holds for
// the values as they stand (by key), the deadline passes or ctx ends. It
// returns the values last seen and whether done held; at the deadline the
// error is nil, and it is ctx's error when ctx ended. A watch that breaks
// (a compaction, a lost leader) is replaced by a fresh read. The waits of
// a handoff's block window use it: a change is seen as soon as etcd
// reports it, and nothing is read again meanwhile (a poll every few
// milliseconds re-read every watermark of the keyspace, which on a loaded
// machine took CPU from the very steps it waited for).
func follow[T any](ctx context.Context, st *state.Store, key string, prefix bool, deadline time.Time, done func(map[string]T) bool) (map[string]T, bool, error) {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var opts []clientv3.OpOption
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	vals := map[string]T{}
	for {
		// The read is bounded by ctx, not the deadline: what is returned
		// at the deadline was read whole.
		resp, err := st.Client().Get(ctx, key, opts...)
		switch {
		case ctx.Err() != nil:
			return vals, false, ctx.Err()
		case err != nil:
			return vals, false, fmt.Errorf("handoff: read %s: %w", key, err)
		}
		clear(vals)
		for _, kv := range resp.Kvs {
			var v T
			if json.Unmarshal(kv.Value, &v) == nil {
				vals[string(kv.Key)] = v
			}
		}
		if done(vals) {
			return vals, true, nil
		}
		if wctx.Err() != nil {
			return vals, false, nil
		}
		wopts := append([]clientv3.OpOption{clientv3.WithRev(resp.Header.Revision + 1)}, opts...)
		for wr := range st.Client().Watch(clientv3.WithRequireLeader(wctx), key, wopts...) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				k := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(vals, k)
					continue
				}
				var v T
				if json.Unmarshal(ev.Kv.Value, &v) == nil {
					vals[k] = v
				}
			}
			if done(vals) {
				return vals, true, nil
			}
		}
		switch {
		case ctx.Err() != nil:
			return vals, false, ctx.Err()
		case wctx.Err() != nil:
			return vals, false, nil
		}
		// The watch broke: read again after a pause.
		retry.Sleep(wctx, rereadAfter)
	}
}
