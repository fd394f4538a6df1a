package dclive

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// DefaultWatchInterval is how often the leader assesses every DC.
const DefaultWatchInterval = 250 * time.Millisecond

// Status is the leader's latest verdict about one DC, at /dcstatus/<dc>.
type Status struct {
	DC        string    `json:"dc"`
	Code      Code      `json:"code"`
	Reason    string    `json:"reason"`
	Witnesses []string  `json:"witnesses,omitempty"`
	Since     time.Time `json:"since"`
	// LeaseGoneSince is when the leader first saw the DC lease missing.
	LeaseGoneSince time.Time `json:"lease_gone_since,omitzero"`
	// LastSeen is when a leader last saw the DC alive: its lease held, or
	// a peer seeing it working (as of this status's writing; the leader
	// keeps it current in memory and hands the current one to OnLost).
	LastSeen time.Time `json:"last_seen,omitzero"`
	By       string    `json:"by"`
}

// StatusKey is the etcd key of dc's status.
func StatusKey(st *state.Store, dc string) string { return st.Key("dcstatus", dc) }

// LostFunc is called once per episode when a DC is declared LOST, with the
// leader's fence. It runs on the watcher's goroutine: the next assessment
// waits for it.
type LostFunc func(ctx context.Context, fence state.Fence, dc string, st Status)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	Store      *state.Store
	Thresholds Thresholds
	Interval   time.Duration
	OnLost     LostFunc
	// ID names the leader in statuses.
	ID         string
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	Now        func() time.Time
}

// Watcher assesses every DC while its coordinator leads.
type Watcher struct {
	o     WatcherOptions
	gauge *prometheus.GaugeVec
	// goneSince: when each DC's lease was first seen missing; lastSeen:
	// when each DC was last seen alive (seeded from the stored statuses,
	// so a new leader knows which DCs ever ran); status: the last verdict
	// written; fired: the DCs whose loss was acted on in this episode.
	goneSince map[string]time.Time
	lastSeen  map[string]time.Time
	status    map[string]Status
	fired     map[string]bool
	seeded    bool
}

// reset starts the episode state afresh.
func (w *Watcher) reset() {
	w.goneSince, w.lastSeen = map[string]time.Time{}, map[string]time.Time{}
	w.status, w.fired, w.seeded = map[string]Status{}, map[string]bool{}, false
}

// NewWatcher returns a watcher.
func NewWatcher(o WatcherOptions) *Watcher {
	if o.Interval <= 0 {
		o.Interval = DefaultWatchInterval
	}
	if o.Thresholds == (Thresholds{}) {
		o.Thresholds = DefaultThresholds
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watcher{o: o, gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "drplane_coordinator_dc_verdict",
		Help: "1 for each DC's current liveness verdict (code), on the leader.",
	}, []string{"dc", "code"})}
	if o.Registerer != nil {
		_ = o.Registerer.Register(w.gauge)
	}
	return w
}

// Lead assesses every DC each interval until ctx ends (the leadership
// ended). The episode state starts afresh with every term.
func (w *Watcher) Lead(ctx context.Context, fence state.Fence) error {
	w.reset()
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		if err := w.Once(ctx, fence); err != nil && ctx.Err() == nil {
			w.o.Logger.Debug().Err(err).Msg("DC liveness not assessed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once reads the leases, views and replication stats and assesses every DC.
func (w *Watcher) Once(ctx context.Context, fence state.Fence) error {
	if w.goneSince == nil {
		w.reset()
	}
	st := w.o.Store
	if !w.seeded {
		stored, _, err := state.List[Status](ctx, st, st.Prefix("dcstatus"))
		if err != nil {
			return err
		}
		for _, s := range stored {
			if s.LastSeen.After(w.lastSeen[s.DC]) {
				w.lastSeen[s.DC] = s.LastSeen
			}
		}
		w.seeded = true
	}
	topo, _, err := st.Topology(ctx)
	if err != nil {
		return err
	}
	leases, _, err := st.DCLeases(ctx)
	if err != nil {
		return err
	}
	views, err := st.DCViews(ctx)
	if err != nil {
		return err
	}
	stats, _, err := state.List[state.ReplStats](ctx, st, st.Prefix("repl"))
	if err != nil {
		return err
	}
	now := w.o.Now()
	for _, dc := range topo.DCs {
		in := w.input(dc, topo, leases, views, stats, now)
		v := Assess(in, w.o.Thresholds)
		w.record(ctx, fence, dc.Name, in, v, now)
	}
	return nil
}

// input gathers the evidence about dc.
func (w *Watcher) input(dc topology.DC, topo topology.Topology, leases map[string]state.DCLease, views []state.DCView,
	stats []state.ReplStats, now time.Time,
) Input {
	_, held := leases[dc.Name]
	if held {
		delete(w.goneSince, dc.Name)
	} else if _, ok := w.goneSince[dc.Name]; !ok {
		w.goneSince[dc.Name] = now
	}
	if held {
		w.lastSeen[dc.Name] = now
	}
	in := Input{DC: dc.Name, Now: now, LeaseHeld: held, LeaseGoneSince: w.goneSince[dc.Name], LastSeen: w.lastSeen[dc.Name]}
	for _, peer := range topo.DCs {
		if peer.Name == dc.Name || peer.StateOf() == topology.DCDown {
			continue
		}
		_, alive := leases[peer.Name]
		p := Peer{DC: peer.Name, Alive: alive}
		for i := range views {
			if views[i].Observer == peer.Name && views[i].Target == dc.Name {
				p.View = &views[i]
			}
		}
		for _, s := range stats {
			if s.DC == peer.Name && s.Origin == dc.Name && s.LastAppliedAt.After(p.LastApplied) {
				p.LastApplied = s.LastAppliedAt
			}
		}
		in.Peers = append(in.Peers, p)
	}
	return in
}

// record writes a changed verdict, and acts once on a loss.
func (w *Watcher) record(ctx context.Context, fence state.Fence, dc string, in Input, v Verdict, now time.Time) {
	if v.Code == SeenByPeers {
		w.lastSeen[dc] = now
	}
	prev, had := w.status[dc]
	cur := Status{DC: dc, Code: v.Code, Reason: v.Reason, Witnesses: v.Witnesses, Since: now.UTC(), By: w.o.ID,
		LastSeen: w.lastSeen[dc].UTC()}
	if !in.LeaseHeld {
		cur.LeaseGoneSince = in.LeaseGoneSince.UTC()
	}
	if had && prev.Code == v.Code {
		cur.Since = prev.Since
	} else {
		if had {
			w.gauge.WithLabelValues(dc, string(prev.Code)).Set(0)
		}
		w.gauge.WithLabelValues(dc, string(v.Code)).Set(1)
		lvl := w.o.Logger.Info()
		if v.Code != Alive {
			lvl = w.o.Logger.Warn()
		}
		lvl.Str("dc", dc).Str("code", string(v.Code)).Str("reason", v.Reason).Msg("DC liveness verdict")
		if _, err := state.Put(ctx, w.o.Store, StatusKey(w.o.Store, dc), cur, state.PutOptions{PrevRev: -1, Fence: &fence}); err != nil {
			w.o.Logger.Warn().Err(err).Str("dc", dc).Msg("DC status not written")
			return
		}
	}
	if had && prev.Code == v.Code {
		cur.LastSeen = prev.LastSeen // as stored
	}
	w.status[dc] = cur
	if v.Code == Alive {
		delete(w.fired, dc)
	}
	if v.Code == Lost && !w.fired[dc] {
		w.fired[dc] = true
		if w.o.OnLost != nil {
			cur.LastSeen = w.lastSeen[dc].UTC()
			w.o.OnLost(ctx, fence, dc, cur)
		}
	}
}
