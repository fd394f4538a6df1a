package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

// Watermark is the last request applied in a DC from one origin, keyspace
// and shard; the record type lives in package state.
type Watermark = state.Watermark

// Stats is one origin's replication into a DC as its collector sees it,
// rewritten every Options.StatsInterval; the record type lives in package
// state.
type Stats = state.ReplStats

// LagWindow is the span of the lag percentiles in Stats.
const LagWindow = 10 * time.Second

const (
	lagSamples      = 4096
	etcdOpsPerTxn   = 100
	progressTimeout = 3 * time.Second
)

// progress tracks watermarks and per-origin statistics and writes them to
// etcd from its own loop.
type progress struct {
	dc, id string
	st     *state.Store
	lease  func() clientv3.LeaseID
	now    func() time.Time
	log    zerolog.Logger

	// kick asks the loop for a watermark flush now (a barrier moved one).
	kick chan struct{}

	mu      sync.Mutex
	marks   map[string]*Watermark // by etcd key
	dirty   map[string]bool
	origins map[string]*originStats
}

type lagSample struct {
	at  time.Time
	lag time.Duration
}

type originStats struct {
	applied, rows, dups, redelivered, dead uint64
	lastApplied                            time.Time
	lags                                   []lagSample
	next                                   int
	prevApplied                            uint64
	prevAt                                 time.Time
}

func newProgress(dc, id string, st *state.Store, lease func() clientv3.LeaseID, now func() time.Time, log zerolog.Logger) *progress {
	return &progress{dc: dc, id: id, st: st, lease: lease, now: now, log: log, kick: make(chan struct{}, 1),
		marks: map[string]*Watermark{}, dirty: map[string]bool{}, origins: map[string]*originStats{}}
}

func (p *progress) origin(name string) *originStats {
	o := p.origins[name]
	if o == nil {
		o = &originStats{prevAt: p.now()}
		p.origins[name] = o
	}
	return o
}

// WatermarkKey is the etcd key of a watermark (state.Store.WatermarkKey).
func WatermarkKey(st *state.Store, dc, origin, keyspace string, shard int32) string {
	return st.WatermarkKey(dc, origin, keyspace, shard)
}

// StatsKey is the etcd key of an origin's statistics in dc
// (state.Store.ReplStatsKey).
func StatsKey(st *state.Store, dc, origin string) string { return st.ReplStatsKey(dc, origin) }

// record notes the outcome of a batch's items: applied now, found applied
// before (both move the watermark), redelivered.
func (p *progress) record(items []*item, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, it := range items {
		if it.meta != nil && it.meta.NumDelivered > 1 {
			p.origin(it.origin()).redelivered++
		}
		if it.ev == nil || !it.done {
			continue
		}
		o := p.origin(it.ev.GetOriginDc())
		if it.fresh {
			o.applied++
			o.rows += uint64(len(it.ev.GetRows()))
			o.lastApplied = at
			if ct := it.commitTime(); !ct.IsZero() {
				s := lagSample{at: at, lag: at.Sub(ct)}
				if len(o.lags) < lagSamples {
					o.lags = append(o.lags, s)
				} else {
					o.lags[o.next] = s
					o.next = (o.next + 1) % lagSamples
				}
			}
		} else {
			o.dups++
		}
		p.advance(it, at)
		if it.ev.GetBarrier() != "" {
			select {
			case p.kick <- struct{}{}:
			default:
			}
		}
	}
}

// advance moves the item's shard watermark to it unless it is older.
func (p *progress) advance(it *item, at time.Time) {
	ev := it.ev
	key := WatermarkKey(p.st, p.dc, ev.GetOriginDc(), ev.GetKeyspace(), ev.GetShard())
	if cur := p.marks[key]; cur != nil && !gtidAtOrAfter(ev.GetGtid(), cur.GTID) {
		return
	}
	p.marks[key] = &Watermark{
		DC: p.dc, Origin: ev.GetOriginDc(), Keyspace: ev.GetKeyspace(), Shard: ev.GetShard(),
		RequestID: ev.GetRequestId(), GTID: ev.GetGtid(), Position: ev.GetPosition(),
		CommitTime: it.commitTime(), AppliedAt: at,
	}
	p.dirty[key] = true
}

// deadLettered counts a dead letter from origin.
func (p *progress) deadLettered(origin string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.origin(origin).dead++
}

// gtidAtOrAfter reports whether MariaDB GTID a (domain-server-seq) is at or
// after b: same domain, sequence not lower. GTIDs of different domains, or
// that do not parse, do not order: a counts as after.
func gtidAtOrAfter(a, b string) bool {
	ga, errA := gtid.Parse(a)
	gb, errB := gtid.Parse(b)
	if errA != nil || errB != nil || ga.Domain != gb.Domain {
		return true
	}
	return ga.Seq >= gb.Seq
}

// flushWatermarks writes the watermarks that moved since the last flush,
// in transactions of up to etcdOpsPerTxn keys; keys that failed stay
// dirty for the next flush.
func (p *progress) flushWatermarks(ctx context.Context) error {
	p.mu.Lock()
	ops := make([]clientv3.Op, 0, len(p.dirty))
	keys := make([]string, 0, len(p.dirty))
	for key := range p.dirty {
		data, err := json.Marshal(p.marks[key])
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("apply: encode watermark %s: %w", key, err)
		}
		ops = append(ops, clientv3.OpPut(key, string(data)))
		keys = append(keys, key)
	}
	clear(p.dirty)
	p.mu.Unlock()
	for len(ops) > 0 {
		n := min(len(ops), etcdOpsPerTxn)
		if _, err := p.st.Client().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			p.mu.Lock()
			for _, k := range keys {
				p.dirty[k] = true
			}
			p.mu.Unlock()
			return fmt.Errorf("apply: write watermarks: %w", err)
		}
		ops, keys = ops[n:], keys[n:]
	}
	return nil
}

// stats computes every origin's statistics now.
func (p *progress) stats(pending uint64) []Stats {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Stats, 0, len(p.origins))
	for name, o := range p.origins {
		s := Stats{
			DC: p.dc, Origin: name, Collector: p.id, Applied: o.applied, Rows: o.rows,
			Duplicates: o.dups, Redelivered: o.redelivered, DeadLettered: o.dead,
			Pending: pending, LastAppliedAt: o.lastApplied, UpdatedAt: now,
		}
		if dt := now.Sub(o.prevAt).Seconds(); dt > 0 {
			s.EventsPerSec = float64(o.applied-o.prevApplied) / dt
		}
		o.prevApplied, o.prevAt = o.applied, now
		var lags []time.Duration
		for _, l := range o.lags {
			if now.Sub(l.at) <= LagWindow {
				lags = append(lags, l.lag)
			}
		}
		if len(lags) > 0 {
			slices.Sort(lags)
			s.LagP50Ms = ms(percentile(lags, 0.50))
			s.LagP99Ms = ms(percentile(lags, 0.99))
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Origin, b.Origin) })
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// publishStats writes every origin's statistics on the process lease.
func (p *progress) publishStats(ctx context.Context, pending uint64) error {
	lease := p.lease()
	var ops []clientv3.Op
	for _, s := range p.stats(pending) {
		data, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("apply: encode stats: %w", err)
		}
		ops = append(ops, clientv3.OpPut(StatsKey(p.st, p.dc, s.Origin), string(data), clientv3.WithLease(lease)))
	}
	for len(ops) > 0 {
		n := min(len(ops), etcdOpsPerTxn)
		if _, err := p.st.Client().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("apply: write stats: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// run flushes watermarks every wmEvery and publishes statistics every
// statsEvery until ctx ends, then flushes the watermarks once more.
func (p *progress) run(ctx context.Context, wmEvery, statsEvery time.Duration, pending func(context.Context) uint64) error {
	wm := time.NewTicker(wmEvery)
	defer wm.Stop()
	st := time.NewTicker(statsEvery)
	defer st.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), progressTimeout)
			if err := p.flushWatermarks(fctx); err != nil {
				p.log.Warn().Err(err).Msg("final watermark flush")
			}
			cancel()
			return nil
		case <-wm.C:
			fctx, cancel := context.WithTimeout(ctx, progressTimeout)
			if err := p.flushWatermarks(fctx); err != nil && ctx.Err() == nil {
				p.log.Warn().Err(err).Msg("watermarks not written; retrying")
			}
			cancel()
		case <-p.kick:
			fctx, cancel := context.WithTimeout(ctx, progressTimeout)
			if err := p.flushWatermarks(fctx); err != nil && ctx.Err() == nil {
				p.log.Warn().Err(err).Msg("watermarks not written; retrying")
			}
			cancel()
		case <-st.C:
			fctx, cancel := context.WithTimeout(ctx, progressTimeout)
			if err := p.publishStats(fctx, pending(fctx)); err != nil && ctx.Err() == nil {
				p.log.Warn().Err(err).Msg("replication stats not written")
			}
			cancel()
		}
	}
}
