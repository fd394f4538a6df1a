package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// retentionPage is how many outbox keys DeleteBefore reads per request.
const retentionPage = 256

// maxTxnOps stays below etcd's default limit of operations per transaction.
const maxTxnOps = 64

// Prefix is the etcd key prefix of the outbox: a reader that follows the
// outbox (list, then watch) ranges over it. The key of an event is Prefix
// followed by its id.
func (o *Outbox) Prefix() string { return o.st.Prefix("audit-outbox") }

// DeleteBefore deletes the outbox events whose time is before cutoff and
// returns how many it deleted. It reads only the keys whose ids (made by
// NewID, so ordered by time) start before cutoff, and deletes an event only
// when its recorded time is before cutoff too (an entry there that is not
// an event at all goes as well). Deleting is idempotent: several processes
// may run it at once.
func (o *Outbox) DeleteBefore(ctx context.Context, cutoff time.Time) (int, error) {
	prefix := o.Prefix()
	end := prefix + cutoff.UTC().Format(idTimeLayout)
	start := prefix
	deleted := 0
	for {
		resp, err := o.st.Client().Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(retentionPage))
		if err != nil {
			return deleted, fmt.Errorf("audit: list expired outbox events: %w", err)
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			var e Event
			if err := json.Unmarshal(kv.Value, &e); err == nil && !e.Time.Before(cutoff) {
				continue
			}
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
		for len(ops) > 0 {
			n := min(len(ops), maxTxnOps)
			if _, err := o.st.Client().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
				return deleted, fmt.Errorf("audit: delete expired outbox events: %w", err)
			}
			deleted += n
			ops = ops[n:]
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return deleted, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
