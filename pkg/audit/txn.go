package audit

import (
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutOp returns the etcd operation that stores e in the outbox, for a writer
// that must record an event in the same transaction as the change it
// audits (so that the change is never stored without its event, nor the
// event without the change).
func (o *Outbox) PutOp(e Event) (clientv3.Op, error) {
	if err := e.Validate(); err != nil {
		return clientv3.Op{}, err
	}
	e = e.Bounded()
	data, err := json.Marshal(e)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("audit: encode event %s: %w", e.ID, err)
	}
	return clientv3.OpPut(o.st.Key("audit-outbox", e.ID), string(data)), nil
}
