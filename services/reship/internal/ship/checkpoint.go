package ship

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/state"
)

// DefaultCheckpointInterval is the default time between checkpoint writes.
const DefaultCheckpointInterval = 100 * time.Millisecond

// Checkpoint is reship's resume position for one (dc, cluster).
type Checkpoint struct {
	// Position is the GTID position after the last transaction whose
	// events were all acknowledged ("" : the start of the binlog).
	Position string `json:"position"`
	// GTID is that transaction's GTID and CommitTime its commit time.
	GTID       string    `json:"gtid,omitempty"`
	CommitTime time.Time `json:"commit_time,omitzero"`
	// Master is the instance it was read from.
	Master    string    `json:"master,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CheckpointKey is the etcd key of the checkpoint of (dc, cluster).
func CheckpointKey(st *state.Store, dc, cluster string) string {
	return st.Key("reship", dc, cluster)
}

// CheckpointOptions configure a Checkpointer.
type CheckpointOptions struct {
	Store       *state.Store
	DC, Cluster string
	// Interval is the minimum time between writes (default
	// DefaultCheckpointInterval).
	Interval time.Duration
	Metrics  *Metrics
	Logger   zerolog.Logger
	Now      func() time.Time
}

// Checkpointer keeps the acknowledged position and writes it to etcd.
type Checkpointer struct {
	o   CheckpointOptions
	key string

	mu   sync.Mutex
	cur  Checkpoint
	have bool
	// stored says whether a checkpoint is stored; written is its position.
	stored  bool
	written string
	dirty   bool
}

// NewCheckpointer returns a checkpointer; Load it before use.
func NewCheckpointer(o CheckpointOptions) *Checkpointer {
	if o.Interval <= 0 {
		o.Interval = DefaultCheckpointInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Checkpointer{o: o, key: CheckpointKey(o.Store, o.DC, o.Cluster)}
}

// Load reads the stored checkpoint; ok is false when none is stored.
func (c *Checkpointer) Load(ctx context.Context) (Checkpoint, bool, error) {
	cp, _, err := state.Get[Checkpoint](ctx, c.o.Store, c.key)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return Checkpoint{}, false, nil
	case err != nil:
		return Checkpoint{}, false, fmt.Errorf("ship: load checkpoint: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.have, c.stored, c.written, c.dirty = cp, true, true, cp.Position, false
	return cp, true, nil
}

// Current returns the acknowledged position; ok is false before Load found
// one or Advance set one.
func (c *Checkpointer) Current() (Checkpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, c.have
}

// Advance moves the acknowledged position; it is written at the next tick.
func (c *Checkpointer) Advance(cp Checkpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.have = cp, true
	c.dirty = c.dirty || !c.stored || cp.Position != c.written
}

// Run writes the position whenever it moved, at most every interval, until
// ctx ends. It does not write at the end: the owner calls Flush once
// nothing can move the position any more.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.Flush(ctx); err != nil && ctx.Err() == nil {
				c.o.Logger.Warn().Err(err).Msg("checkpoint write failed; retrying")
			}
		}
	}
}

// Flush writes the position now if it moved since the last write.
func (c *Checkpointer) Flush(ctx context.Context) error {
	c.mu.Lock()
	cp, dirty := c.cur, c.dirty
	c.mu.Unlock()
	if !dirty {
		return nil
	}
	cp.UpdatedAt = c.o.Now().UTC()
	if _, err := state.Put(ctx, c.o.Store, c.key, cp, state.PutOptions{PrevRev: -1}); err != nil {
		c.count("failed")
		return fmt.Errorf("ship: write checkpoint: %w", err)
	}
	c.count("ok")
	c.mu.Lock()
	c.stored, c.written = true, cp.Position
	c.dirty = c.cur.Position != cp.Position
	c.mu.Unlock()
	return nil
}

func (c *Checkpointer) count(result string) {
	if c.o.Metrics != nil {
		c.o.Metrics.cpWrites.WithLabelValues(result).Inc()
	}
}
