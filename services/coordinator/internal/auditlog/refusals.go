package auditlog

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/guard"
)

// Defaults of RefusalsOptions.
const (
	DefaultRefusalWindow = time.Minute
	DefaultMaxCallers    = 1000
)

// ActionRefusedOverflow is the action of the aggregate event of refusals
// from callers beyond RefusalsOptions.MaxCallers.
const ActionRefusedOverflow = "api.refused"

// ActorVarious is the actor of that aggregate event.
const ActorVarious = "various"

// Parameters of an aggregate event.
const (
	ParamRepeated  = "repeated"
	ParamFirstSeen = "first_seen"
	ParamLastSeen  = "last_seen"
)

// RefusalsOptions configure a Refusals.
type RefusalsOptions struct {
	// Store is the etcd state store holding the outbox.
	Store *state.Store
	// Source names this coordinator in event ids.
	Source string
	// Window is how long the repeated refusals of one caller are gathered
	// into one event (default 1 minute).
	Window time.Duration
	// MaxCallers bounds the callers tracked in a window (default 1000);
	// refusals of others are gathered into one ActionRefusedOverflow
	// event.
	MaxCallers int
	// Rate (events per second, default 5) and Burst (default 20) bound
	// the first events of callers written at once; a first event over the
	// limit is written with its caller's aggregate instead.
	Rate  float64
	Burst int
	// Registerer receives drplane_coordinator_audit_refusals_aggregated_total;
	// nil registers nothing.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Refusals writes the audit events of refused calls (outcome DENIED) so
// that a flood of them costs etcd a bounded number of writes: per caller
// and action, the first refusal of a window is written at once (under a
// token bucket), the following ones are counted, and at the end of the
// window one event carries their count (ParamRepeated), the first and last
// time seen, and the last one's target, parameters and error. Writes are at
// most Rate×Window+Burst+MaxCallers+1 per window, whatever the flood.
type Refusals struct {
	o          RefusalsOptions
	outbox     *audit.Outbox
	bucket     *rate.Limiter
	seq        atomic.Uint64
	aggregated prometheus.Counter

	mu      sync.Mutex
	callers map[string]*gathered
}

// gathered is what one caller's refusals of the current window left to
// write.
type gathered struct {
	start       time.Time
	count       int64
	first, last time.Time
	ev          audit.Event
}

// NewRefusals returns the aggregator; Run flushes it.
func NewRefusals(o RefusalsOptions) *Refusals {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Window <= 0 {
		o.Window = DefaultRefusalWindow
	}
	if o.MaxCallers <= 0 {
		o.MaxCallers = DefaultMaxCallers
	}
	if o.Rate <= 0 {
		o.Rate = DefaultUnauthRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultUnauthBurst
	}
	if o.Source == "" {
		o.Source = "coordinator"
	}
	r := &Refusals{
		o: o, outbox: audit.NewOutbox(o.Store), bucket: rate.NewLimiter(rate.Limit(o.Rate), o.Burst),
		callers: map[string]*gathered{},
		aggregated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_coordinator_audit_refusals_aggregated_total",
			Help: "Refused API calls audited in an aggregate event rather than one each.",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(r.aggregated)
	}
	return r
}

// callerKey is whom a refusal is counted for: the action and the token's
// name, else the caller's address (an unknown token is any string the
// caller likes, so it does not make a caller of its own).
func callerKey(ev audit.Event) string {
	who := ev.Actor
	if !strings.HasPrefix(who, "token:") {
		who = "peer:" + guard.HostKey(ev.Params["peer"])
	}
	return ev.Action + "\x00" + who
}

// overflowKey gathers the refusals of callers beyond MaxCallers.
const overflowKey = "\x00overflow"

// Put audits one refused call. An event whose outcome is not DENIED is
// written as it is.
func (r *Refusals) Put(ctx context.Context, ev audit.Event) error {
	if ev.Outcome != audit.OutcomeDenied {
		return r.write(ctx, ev)
	}
	now := r.o.Now()
	if ev.Time.IsZero() {
		ev.Time = now.UTC()
	}
	ev = ev.Bounded()
	key, overflow := callerKey(ev), false
	r.mu.Lock()
	g, ok := r.callers[key]
	if !ok && len(r.callers) >= r.o.MaxCallers {
		key, overflow = overflowKey, true
		g, ok = r.callers[key]
	}
	if !ok {
		g = &gathered{start: now}
		r.callers[key] = g
		if !overflow && r.bucket.AllowN(now, 1) {
			r.mu.Unlock()
			return r.write(ctx, ev)
		}
	}
	r.addLocked(g, ev, overflow)
	r.mu.Unlock()
	r.aggregated.Inc()
	return nil
}

func (r *Refusals) addLocked(g *gathered, ev audit.Event, overflow bool) {
	if g.count == 0 || ev.Time.Before(g.first) {
		g.first = ev.Time
	}
	if ev.Time.After(g.last) {
		g.last = ev.Time
	}
	g.count++
	if overflow {
		ev.Actor, ev.Action, ev.Target, ev.Params, ev.Error = ActorVarious, ActionRefusedOverflow, "", nil, ""
	}
	g.ev = ev
}

// Flush writes the aggregate of every caller whose window has ended.
func (r *Refusals) Flush(ctx context.Context) {
	r.flush(ctx, false)
}

func (r *Refusals) flush(ctx context.Context, all bool) {
	now := r.o.Now()
	var due []*gathered
	r.mu.Lock()
	for k, g := range r.callers {
		if all || !now.Before(g.start.Add(r.o.Window)) {
			delete(r.callers, k)
			if g.count > 0 {
				due = append(due, g)
			}
		}
	}
	r.mu.Unlock()
	for _, g := range due {
		ev := g.ev
		params := make(map[string]string, len(ev.Params)+3)
		for k, v := range ev.Params {
			params[k] = v
		}
		params[ParamRepeated] = strconv.FormatInt(g.count, 10)
		params[ParamFirstSeen] = g.first.UTC().Format(time.RFC3339Nano)
		params[ParamLastSeen] = g.last.UTC().Format(time.RFC3339Nano)
		ev.Params, ev.Time, ev.ID = params, g.last.UTC(), ""
		if err := r.write(ctx, ev); err != nil {
			return
		}
	}
}

// Run flushes the windows that end until ctx ends, then everything
// gathered.
func (r *Refusals) Run(ctx context.Context) error {
	tick := time.NewTicker(max(r.o.Window/10, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unauthWriteTimeout)
			r.flush(fctx, true)
			cancel()
			return nil
		case <-tick.C:
			r.Flush(ctx)
		}
	}
}

// Pending is how many callers have refusals gathered and not yet written.
func (r *Refusals) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.callers {
		if g.count > 0 {
			n++
		}
	}
	return n
}

// write stores ev in the outbox, giving it an id; a failed write is
// logged (and returned).
func (r *Refusals) write(ctx context.Context, ev audit.Event) error {
	now := r.o.Now()
	if ev.ID == "" {
		ev.ID = audit.NewID(now, r.o.Source+"/refusals", r.seq.Add(1))
	}
	if ev.Time.IsZero() {
		ev.Time = now.UTC()
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unauthWriteTimeout)
	defer cancel()
	err := r.outbox.Put(wctx, ev)
	if err != nil {
		r.o.Logger.Error().Err(err).Str("action", ev.Action).Str("target", ev.Target).Str("actor", ev.Actor).
			Msg("audit event not written")
	}
	return err
}
