package elect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// Leadership is one tenure as the DC's active agent.
type Leadership struct {
	// Ctx is cancelled when the tenure ends; context.Cause tells why.
	Ctx context.Context
	// Fence guards every write made as leader (state.PutOptions.Fence).
	Fence state.Fence
	// Lease is the election lease; keys put on it vanish with the tenure.
	Lease clientv3.LeaseID
	// Since is when the election was won (Options.Now).
	Since time.Time
}

// Elector campaigns for, holds and gives up the active-agent role of a DC.
type Elector struct {
	o      Options
	log    zerolog.Logger
	prefix string

	leader atomic.Bool
	spp    atomic.Bool

	mLeader prometheus.Gauge
	mSPP    prometheus.Gauge
	mFence  prometheus.Counter
}

// New validates o and returns an elector; errors wrap ErrOptions.
func New(o Options) (*Elector, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	e := &Elector{
		o:      o,
		log:    o.Logger.With().Str("component", "elect").Logger(),
		prefix: o.Store.Key("agents", o.DC, "election"),
		mLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_haagent_leader", Help: "1 while this agent is the DC's active agent.",
		}),
		mSPP: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_haagent_single_point_primary",
			Help: "1 while this agent leads although etcd has lost its quorum (single-point primary).",
		}),
		mFence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drplane_haagent_self_fence_total",
			Help: "Times this agent fenced itself because it could not renew its election lease.",
		}),
	}
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{e.mLeader, e.mSPP, e.mFence} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("%w: register metrics: %w", ErrOptions, err)
			}
		}
	}
	return e, nil
}

// IsLeader reports whether this elector holds the election now.
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// SinglePointPrimary reports whether this elector leads while etcd has no
// quorum: nobody can be elected or change a master record, so the current
// master keeps serving.
func (e *Elector) SinglePointPrimary() bool { return e.spp.Load() }

// Leader returns the ID of the agent holding the election, or ErrNoLeader.
func (e *Elector) Leader(ctx context.Context) (string, error) {
	resp, err := e.o.Client.Get(ctx, e.prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("elect: leader of %s: %w", e.o.DC, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w in %s", ErrNoLeader, e.o.DC)
	}
	return string(resp.Kvs[0].Value), nil
}

// Run campaigns until ctx ends and returns nil then. Each time it wins it
// calls lead in a goroutine of its own and cancels l.Ctx when the tenure
// ends; it waits for lead to return before campaigning again. An error (or
// an early return) from lead gives the election up; Run campaigns again
// after Options.Backoff. When ctx ends Run resigns and revokes its lease so
// a standby takes over at once, unless ctx was cancelled with cause
// ErrAbandon. Run must not be called twice at the same time.
func (e *Elector) Run(ctx context.Context, lead func(l Leadership) error) error {
	if lead == nil {
		return fmt.Errorf("%w: lead is required", ErrOptions)
	}
	var leftover clientv3.LeaseID // abandoned while etcd was out of reach
	for {
		if ctx.Err() != nil {
			return nil
		}
		if leftover != 0 {
			if err := e.revoke(ctx, leftover); err != nil {
				e.log.Debug().Err(err).Msg("etcd does not answer yet")
				if !retry.Sleep(ctx, e.o.Backoff) {
					return nil
				}
				continue
			}
			e.log.Info().Str("lease", leaseHex(leftover)).Msg("etcd answers again; released the abandoned lease")
		}
		lease, err := e.term(ctx, lead)
		leftover = lease
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			e.log.Warn().Err(err).Dur("retry_in", e.o.Backoff).Msg("election term ended")
			if !retry.Sleep(ctx, e.o.Backoff) {
				return nil
			}
		}
	}
}

// opTimeout bounds single etcd calls made outside the watchdog.
func (e *Elector) opTimeout() time.Duration { return max(e.o.TTL/2, time.Second) }

// revoke revokes a lease; a lease already gone counts as revoked.
func (e *Elector) revoke(ctx context.Context, lease clientv3.LeaseID) error {
	rctx, cancel := context.WithTimeout(ctx, e.opTimeout())
	defer cancel()
	if _, err := e.o.Client.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("revoke lease %s: %w", leaseHex(lease), err)
	}
	return nil
}

// term runs one lease: grant, campaign, lead, release. It returns the lease
// when it could not be released (to revoke once etcd answers) and why the
// term ended early, or nil when ctx ended.
func (e *Elector) term(ctx context.Context, lead func(Leadership) error) (clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, e.opTimeout())
	g, err := e.o.Client.Grant(gctx, ttlSeconds(e.o.TTL))
	cancel()
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	t := &term{e: e, lease: g.ID, tm: e.o.timing(time.Duration(g.TTL) * time.Second)}
	t.renewed(e.o.Now())
	log := e.log.With().Str("lease", leaseHex(g.ID)).Dur("ttl", t.tm.ttl).Logger()
	t.log = &log
	if g.TTL != ttlSeconds(e.o.TTL) {
		log.Info().Dur("requested_ttl", e.o.TTL).Msg("etcd granted a longer lease TTL than requested")
	}

	// The keepalives stop when the term ends, not when ctx does: a leader
	// shutting down keeps its lease until lead has returned and it resigned.
	kctx, stopKeepAlive := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopKeepAlive()
	wg.Go(func() { t.keepAlive(kctx) })
	sess, err := concurrency.NewSession(e.o.Client, concurrency.WithLease(g.ID), concurrency.WithContext(kctx))
	if err != nil {
		return t.release(ctx, nil), fmt.Errorf("session: %w", err)
	}
	el := concurrency.NewElection(sess, e.prefix)
	if err := t.campaign(ctx, sess, el); err != nil {
		if ctx.Err() != nil {
			if abandoned(ctx) {
				return 0, nil
			}
			return t.release(ctx, nil), nil
		}
		return t.release(ctx, nil), err
	}
	return t.lead(ctx, sess, el, lead)
}

// campaign waits until the election is won (nil), ctx ends or the lease is
// lost.
func (t *term) campaign(ctx context.Context, sess *concurrency.Session, el *concurrency.Election) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- el.Campaign(cctx, t.e.o.ID) }()
	t.log.Debug().Msg("campaigning")
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-sess.Done():
		err = fmt.Errorf("%w while campaigning", ErrLeaseLost)
	}
	if err != nil {
		cancel()
		// Campaign resigns its candidacy when cancelled; give it a bounded time.
		timer := time.NewTimer(t.e.opTimeout())
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
		}
		return fmt.Errorf("campaign: %w", err)
	}
	// Make sure the candidacy still stands: the lease may have expired while
	// the campaign waited.
	select {
	case <-sess.Done():
		return fmt.Errorf("campaign: %w", ErrLeaseLost)
	default:
	}
	vctx, vcancel := context.WithTimeout(ctx, t.e.opTimeout())
	defer vcancel()
	resp, err := t.e.o.Client.Get(vctx, el.Key())
	if err != nil {
		return fmt.Errorf("campaign: confirm candidacy: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != el.Rev() {
		return fmt.Errorf("campaign: %w: candidacy key gone", ErrLeaseLost)
	}
	return nil
}

// lead runs one tenure.
func (t *term) lead(ctx context.Context, sess *concurrency.Session, el *concurrency.Election, lead func(Leadership) error) (clientv3.LeaseID, error) {
	e := t.e
	t.key, t.rev = el.Key(), el.Rev()
	if e.o.SinglePointLimit > 0 {
		// Beside the tenure, not before it: a slow etcd must not delay
		// the lead callback.
		mctx, stopMembers := context.WithCancel(ctx)
		defer stopMembers()
		go func() {
			if urls := t.learnMembers(mctx); urls != nil {
				t.members.Store(&urls)
			}
		}()
	}
	lctx, lcancel := context.WithCancelCause(ctx)
	defer lcancel(nil)
	l := Leadership{Ctx: lctx, Fence: state.Fence{Key: t.key, Rev: t.rev}, Lease: t.lease, Since: e.o.Now()}
	e.setLeader(true)
	t.log.Info().Int64("fencing_revision", t.rev).Msg("leading")

	leadDone := make(chan error, 1)
	go func() { leadDone <- lead(l) }()
	out, leadErr := t.supervise(ctx, sess, leadDone)

	e.setLeader(false)
	t.setSPP(false)
	lcancel(out.cause(ctx))
	if out == endLeaseLost {
		// The lease is gone and a standby may be elected any moment: the tenure
		// ended at once above, and the masters are fenced as when etcd is out
		// of reach.
		t.fence(ctx, t.lost)
	}
	if out != endLeadReturned {
		leadErr = <-leadDone
	}
	t.log.Info().Err(out.cause(ctx)).AnErr("lead_error", leadErr).Msg("leadership ended")
	switch out {
	case endAbandon:
		return 0, nil
	case endStop:
		return t.release(ctx, el), nil
	case endLeadReturned:
		if leadErr != nil {
			return t.release(ctx, el), fmt.Errorf("%w: %w", ErrLeadReturned, leadErr)
		}
		return t.release(ctx, el), ErrLeadReturned
	case endFenced:
		return t.lease, ErrSelfFenced
	default:
		return t.lease, ErrLeaseLost
	}
}

// release resigns (when el is set) and revokes the term's lease. It returns
// the lease when etcd did not confirm the revocation, else 0.
func (t *term) release(ctx context.Context, el *concurrency.Election) clientv3.LeaseID {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.e.opTimeout())
	defer cancel()
	if el != nil {
		if err := el.Resign(rctx); err != nil {
			t.log.Warn().Err(err).Msg("resign")
		}
	}
	if err := t.e.revoke(rctx, t.lease); err != nil {
		t.log.Warn().Err(err).Msg("the lease expires with its TTL")
		return t.lease
	}
	return 0
}

func (e *Elector) setLeader(v bool) {
	e.leader.Store(v)
	e.mLeader.Set(gauge(v))
}

func gauge(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

func abandoned(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrAbandon) }

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
