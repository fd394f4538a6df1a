package state

import (
	"time"
)

// Barrier asks the collector of DC to write a handoff barrier into its
// master: a row of <database>.drplane_barrier, committed with binlogging
// on (not skip_replication), so that the DC's reship captures it after
// everything committed before it and ships one barrier ChangeEvent per
// shard in the same order. The coordinator leader writes it at
// /barriers/<dc>/<id>; the collector fills GTID (the barrier
// transaction's GTID: the old owner's capture watermark for the shards) or
// Error. Target DCs' collectors apply the barrier events by moving the
// shard's watermark (/watermarks/...) to GTID, so "every target applied the
// shard up to the barrier" is a watermark comparison.
type Barrier struct {
	ID       string  `json:"id"`
	DC       string  `json:"dc"`
	Keyspace string  `json:"keyspace"`
	Database string  `json:"database"`
	Shards   []int32 `json:"shards"`
	// OperationID is the operation the barrier belongs to.
	OperationID string    `json:"operation_id,omitempty"`
	RequestedAt time.Time `json:"requested_at"`

	// Set by the collector.
	GTID     string    `json:"gtid,omitempty"`
	MarkedAt time.Time `json:"marked_at,omitzero"`
	MarkedBy string    `json:"marked_by,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// BarrierTable is the table barriers are written to, in the keyspace's
// database; the collector creates it.
const BarrierTable = "drplane_barrier"

// BarrierKey is the key of a barrier of dc.
func (s *Store) BarrierKey(dc, id string) string { return s.Key("barriers", dc, id) }

// BarrierPrefix is the prefix of dc's barriers.
func (s *Store) BarrierPrefix(dc string) string { return s.Prefix("barriers", dc) }

// RouterStream is one SDK router's open WatchRoutes stream, as the
// coordinator serving it records it at /routers/<stream_id> on a lease of
// the stream (it disappears when the stream ends), with the map revision
// the router acknowledged last per keyspace (ShardService.AckRoutes).
type RouterStream struct {
	ID          string   `json:"id"`
	DC          string   `json:"dc,omitempty"`
	Client      string   `json:"client,omitempty"`
	Coordinator string   `json:"coordinator,omitempty"`
	Keyspaces   []string `json:"keyspaces,omitempty"`
	// Acked is the last acknowledged map revision per keyspace.
	Acked map[string]int64 `json:"acked,omitempty"`
	Since time.Time        `json:"since"`
}

// Watches reports whether the stream watches keyspace (all when it names
// none).
func (r RouterStream) Watches(keyspace string) bool {
	if len(r.Keyspaces) == 0 {
		return true
	}
	for _, k := range r.Keyspaces {
		if k == keyspace {
			return true
		}
	}
	return false
}

// RouterKey is the key of a router stream.
func (s *Store) RouterKey(id string) string { return s.Key("routers", id) }

// RouterPrefix is the prefix of every router stream.
func (s *Store) RouterPrefix() string { return s.Prefix("routers") }
