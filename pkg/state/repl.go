package state

import (
	"context"
	"strconv"
	"time"
)

// Watermark is the last request applied in a DC from one origin, keyspace
// and shard, as the DC's collector writes it at
// /watermarks/<dc>/<origin>/<keyspace>/<shard>. A shard's watermark only
// moves forward (by GTID sequence within a domain), also when an old
// request is delivered again.
type Watermark struct {
	DC        string `json:"dc"`
	Origin    string `json:"origin"`
	Keyspace  string `json:"keyspace"`
	Shard     int32  `json:"shard"`
	RequestID string `json:"request_id"`
	GTID      string `json:"gtid"`
	// Position is the origin's binlog position after the request.
	Position   string    `json:"position,omitempty"`
	CommitTime time.Time `json:"commit_time"`
	AppliedAt  time.Time `json:"applied_at"`
}

// ReplStats is one origin's replication into a DC as the DC's collector
// sees it, written at /repl/<dc>/<origin> on the collector's lease (it
// disappears when the collector dies) and rewritten every few seconds.
type ReplStats struct {
	DC        string `json:"dc"`
	Origin    string `json:"origin"`
	Collector string `json:"collector"`
	// Applied, Rows, Duplicates, Redelivered and DeadLettered count since
	// the collector started.
	Applied      uint64  `json:"applied"`
	Rows         uint64  `json:"rows"`
	EventsPerSec float64 `json:"events_per_sec"`
	// LagP50Ms and LagP99Ms are over the requests applied in the
	// collector's recent lag window (apply time − origin commit time); 0
	// when there were none.
	LagP50Ms     float64 `json:"lag_p50_ms"`
	LagP99Ms     float64 `json:"lag_p99_ms"`
	Duplicates   uint64  `json:"duplicates"`
	Redelivered  uint64  `json:"redelivered"`
	DeadLettered uint64  `json:"dead_lettered"`
	// Pending is the inbound stream's backlog for the whole DC (all
	// origins): messages not yet delivered plus delivered and not acked.
	Pending       uint64    `json:"pending"`
	LastAppliedAt time.Time `json:"last_applied_at,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// WatermarkKey is the key of the watermark of (origin, keyspace, shard) in
// dc.
func (s *Store) WatermarkKey(dc, origin, keyspace string, shard int32) string {
	return s.Key("watermarks", dc, origin, keyspace, strconv.Itoa(int(shard)))
}

// ReplStatsKey is the key of origin's replication statistics in dc.
func (s *Store) ReplStatsKey(dc, origin string) string { return s.Key("repl", dc, origin) }

// Watermarks lists the watermarks of dc, of every DC when dc is empty, and
// of one origin when origin is set too.
func (s *Store) Watermarks(ctx context.Context, dc, origin string) ([]Watermark, error) {
	p := s.Prefix("watermarks")
	switch {
	case dc != "" && origin != "":
		p = s.Prefix("watermarks", dc, origin)
	case dc != "":
		p = s.Prefix("watermarks", dc)
	}
	ws, _, err := List[Watermark](ctx, s, p)
	return ws, err
}

// ReplStatsList lists the replication statistics of dc's collector, or of
// every DC's when dc is empty.
func (s *Store) ReplStatsList(ctx context.Context, dc string) ([]ReplStats, error) {
	p := s.Prefix("repl")
	if dc != "" {
		p = s.Prefix("repl", dc)
	}
	rs, _, err := List[ReplStats](ctx, s, p)
	return rs, err
}
