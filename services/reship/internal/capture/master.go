package capture

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// followRetry is the pause before the master record is read again after a
// failed read or a watch that ended.
const followRetry = 250 * time.Millisecond

// Follower follows the master record of one (dc, cluster).
type Follower struct {
	store       *state.Store
	dc, cluster string
	log         zerolog.Logger

	mu      sync.Mutex
	rec     state.MasterRecord
	have    bool
	changed chan struct{}
}

// NewFollower returns a follower; Run keeps it current.
func NewFollower(store *state.Store, dc, cluster string, log zerolog.Logger) *Follower {
	return &Follower{store: store, dc: dc, cluster: cluster, log: log, changed: make(chan struct{})}
}

// Current returns the current master record (ok is false while none is
// known) and a channel that is closed at the next change of master.
func (f *Follower) Current() (rec state.MasterRecord, ok bool, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec, f.have, f.changed
}

// set records rec and signals a change when the master differs.
func (f *Follower) set(rec state.MasterRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.have && f.rec.Addr == rec.Addr && f.rec.Term == rec.Term && f.rec.Instance == rec.Instance {
		return
	}
	f.rec, f.have = rec, true
	close(f.changed)
	f.changed = make(chan struct{})
	f.log.Info().Str("master", rec.Instance).Str("addr", rec.Addr).Int64("term", rec.Term).Msg("capturing from master")
}

// Run reads the master record and follows its changes until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	key := f.store.Key("masters", f.dc, f.cluster)
	for ctx.Err() == nil {
		resp, err := f.store.Client().Get(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn().Err(err).Msg("read master record")
			}
			retry.Sleep(ctx, followRetry)
			continue
		}
		if len(resp.Kvs) == 0 {
			f.log.Warn().Str("cluster", f.cluster).Msg("no master record yet")
		} else {
			var rec state.MasterRecord
			if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
				f.log.Error().Err(err).Str("key", key).Msg("undecodable master record")
			} else {
				f.set(rec)
			}
		}
		for ev := range state.Watch[state.MasterRecord](ctx, f.store, key, false, resp.Header.Revision+1) {
			if !ev.Deleted {
				f.set(ev.Value)
			}
		}
		retry.Sleep(ctx, followRetry)
	}
	return nil
}
