package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drplane/drplane/pkg/docstore"
)

// ErrNotFound means the ledger has no document for a request.
var ErrNotFound = errors.New("ledger: request not found")

// Lookup returns the ledger document of a request (ErrNotFound when the
// ledger has none), its derived fields recomputed from its facts.
func (l *Ledger) Lookup(ctx context.Context, origin, requestID string) (*Document, error) {
	raw, err := l.o.Docs.Get(ctx, l.o.Config.Index, DocID(origin, requestID))
	if errors.Is(err, docstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, DocID(origin, requestID))
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s: %w", DocID(origin, requestID), err)
	}
	d, err := decodeDocument(raw)
	if err != nil {
		return nil, err
	}
	d.derive(d.UpdatedAt)
	return d, nil
}

// Backlog is what one DC captured and the ledger has not seen applied in
// every target.
type Backlog struct {
	DC string
	// Pending counts the captured requests some target has still to apply;
	// DeadLettered those a target dead-lettered (and did not apply since).
	Pending, DeadLettered int64
	// OldestPending is the capture time of the oldest pending request.
	OldestPending time.Time
}

// Backlog counts dc's backlog.
func (l *Ledger) Backlog(ctx context.Context, dc string) (Backlog, error) {
	b := Backlog{DC: dc}
	q := func(state string) docstore.Query {
		return docstore.Query{
			Text:  "_exists_:" + fieldCapturedAt,
			Terms: map[string][]string{fieldOrigin: {dc}, fieldState: {state}},
			Sort:  fieldCapturedAt, Size: 1,
		}
	}
	res, err := l.o.Docs.Search(ctx, l.o.Config.Index, q(StatePending))
	if err != nil {
		return b, fmt.Errorf("ledger: count the backlog of %s: %w", dc, err)
	}
	b.Pending = res.Total
	if len(res.Hits) > 0 {
		if d, err := decodeDocument(res.Hits[0].Doc); err == nil {
			b.OldestPending = d.CapturedAt
		}
	}
	res, err = l.o.Docs.Search(ctx, l.o.Config.Index, q(StateDeadLettered))
	if err != nil {
		return b, fmt.Errorf("ledger: count the dead letters of %s: %w", dc, err)
	}
	b.DeadLettered = res.Total
	return b, nil
}

// Retried counts the requests from origin that target must apply and that
// were retried at least once.
func (l *Ledger) Retried(ctx context.Context, origin, target string) (int64, error) {
	one := int64(1)
	res, err := l.o.Docs.Search(ctx, l.o.Config.Index, docstore.Query{
		Terms:  map[string][]string{fieldOrigin: {origin}, fieldTargets: {target}},
		Ranges: []docstore.Range{{Field: fieldAttempts, Min: &one}},
		Size:   1,
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: count retried requests %s → %s: %w", origin, target, err)
	}
	return res.Total, nil
}

// Unapplied is one request captured in a DC that a target has not applied.
type Unapplied struct {
	RequestID, GTID, Keyspace string
	Shard                     int32
}

// Unapplied returns the requests captured in origin that target has not
// applied (pending there or dead-lettered there), at most limit of them,
// and how many there are. The ledger knows only the facts that reached
// it: a request whose capture never left origin is not among them.
func (l *Ledger) Unapplied(ctx context.Context, origin, target string, limit int) ([]Unapplied, int64, error) {
	var out []Unapplied
	var total int64
	for _, field := range []string{fieldPendingDCs, "dead_lettered_dcs"} {
		q := docstore.Query{Terms: map[string][]string{fieldOrigin: {origin}, field: {target}}, Sort: fieldCapturedAt,
			Size: docstore.MaxSize}
		for {
			res, err := l.o.Docs.Search(ctx, l.o.Config.Index, q)
			if err != nil {
				return nil, 0, fmt.Errorf("ledger: requests of %s not applied at %s: %w", origin, target, err)
			}
			if q.After == "" {
				total += res.Total
			}
			for _, h := range res.Hits {
				if len(out) >= limit {
					break
				}
				d, err := decodeDocument(h.Doc)
				if err != nil {
					continue
				}
				out = append(out, Unapplied{RequestID: d.RequestID, GTID: d.GTID, Keyspace: d.Keyspace, Shard: d.Shard})
			}
			if res.Next == "" || len(out) >= limit {
				break
			}
			q.After = res.Next
		}
	}
	return out, total, nil
}
