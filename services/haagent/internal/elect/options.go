package elect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// Errors of this package. Leadership.Ctx is cancelled with ErrSelfFenced,
// ErrLeaseLost or ErrLeadReturned as its cause (context.Cause), or with the
// cause of Run's context when that ends.
var (
	// ErrOptions wraps every validation failure of New.
	ErrOptions = errors.New("elect: invalid options")
	// ErrAbandon, as the cancel cause of Run's context
	// (context.WithCancelCause), makes Run return without resigning or
	// revoking its lease, as a crashed process would: a standby takes over
	// only when the lease expires.
	ErrAbandon = errors.New("elect: abandon (simulated crash)")
	// ErrNoLeader is returned by Leader when nobody holds the election.
	ErrNoLeader = errors.New("elect: no leader")
	// ErrSelfFenced: the lease could not be renewed and etcd could not be
	// reached, so the elector fenced itself and gave leadership up.
	ErrSelfFenced = errors.New("elect: self-fenced, lease not renewed")
	// ErrLeaseLost: the lease expired or was revoked.
	ErrLeaseLost = errors.New("elect: lease lost")
	// ErrLeadReturned: the lead callback returned while still leader.
	ErrLeadReturned = errors.New("elect: lead returned")
)

// Options configures an Elector.
type Options struct {
	// Client is the etcd client; Store gives the key layout. Both required.
	Client *clientv3.Client
	Store  *state.Store
	// DC is the data center whose agents compete; ID names this agent and is
	// the value it campaigns with (what Leader returns). Both required.
	DC, ID string
	// TTL is the lease TTL, in whole seconds (rounded up, at least 1s). etcd
	// raises TTLs below its minimum (about 1.5 × its election timeout); the
	// granted TTL is what the elector then works with.
	TTL time.Duration
	// FenceBefore: while leading, when the lease has not been renewed for
	// TTL − FenceBefore the elector decides within FenceBefore/2 whether etcd
	// lost its quorum (keep leading) or is out of reach (self-fence), leaving
	// FenceBefore/2 for SelfFence before the lease can expire. Default TTL/3;
	// must be below TTL. The etcd client renews about every TTL/3 (on a
	// 500 ms grid), so with FenceBefore above TTL/2 the watchdog often renews
	// the lease itself through its probe.
	FenceBefore time.Duration
	// Now is the clock renewals are stamped and judged with (default time.Now).
	Now func() time.Time
	// Check is the watchdog tick (default TTL/10, at most FenceBefore/4);
	// must be below FenceBefore/2.
	Check time.Duration
	// Backoff is the wait before campaigning again after lead failed or etcd
	// refused a lease (default TTL/4).
	Backoff time.Duration
	// SinglePointLimit bounds single-point-primary mode: once the lease has
	// gone this long without a renewal while etcd answers "no leader", the
	// elector asks every etcd member (as listed when the tenure began) and
	// fences itself unless a majority of them answer, none with a leader. A
	// member cut off together with the agent answers "no leader" too, while
	// the majority may elect another agent: keep SinglePointLimit plus the
	// time to fence below the semi-sync timeout, so that a master cut off
	// from its replicas is fenced before it acknowledges asynchronously.
	// 0: no limit.
	SinglePointLimit time.Duration
	// SelfFence is called, while leading, when the lease could not be renewed
	// for TTL − FenceBefore and etcd cannot be reached, before the lease can
	// expire; the leadership context is cancelled right after it returns, so
	// lead may still be running and the callback must serialize with lead's
	// own actions. It is also called, just after the leadership context was
	// cancelled, when the lease turns out to be gone already (expired during a
	// stall of this process, or revoked). At most once per tenure. Its context
	// expires when the lease may expire (at least FenceBefore). Required.
	SelfFence func(ctx context.Context, reason string)
	Logger    zerolog.Logger
	// Registry receives the gauges drplane_haagent_leader and
	// drplane_haagent_single_point_primary and the counter
	// drplane_haagent_self_fence_total (none when nil).
	Registry prometheus.Registerer
}

// timing is what the elector works with for one lease.
type timing struct {
	ttl, fenceBefore, check time.Duration
}

// threshold is the renewal age at which the watchdog starts deciding.
func (t timing) threshold() time.Duration { return t.ttl - t.fenceBefore }

// window is the time the watchdog has to decide.
func (t timing) window() time.Duration { return t.fenceBefore / 2 }

// validate checks o and fills in defaults.
func (o *Options) validate() error {
	var bad []string
	if o.Client == nil {
		bad = append(bad, "Client is required")
	}
	if o.Store == nil {
		bad = append(bad, "Store is required")
	}
	if o.DC == "" || strings.Contains(o.DC, "/") {
		bad = append(bad, fmt.Sprintf("DC %q must be non-empty and without '/'", o.DC))
	}
	if o.ID == "" {
		bad = append(bad, "ID is required")
	}
	if o.SelfFence == nil {
		bad = append(bad, "SelfFence is required")
	}
	if o.TTL < time.Second {
		bad = append(bad, fmt.Sprintf("TTL %s must be at least 1s", o.TTL))
	} else {
		o.TTL = time.Duration(ttlSeconds(o.TTL)) * time.Second
		if problem := o.checkTiming(); problem != "" {
			bad = append(bad, problem)
		}
	}
	if o.SinglePointLimit < 0 {
		bad = append(bad, fmt.Sprintf("SinglePointLimit %s must not be negative", o.SinglePointLimit))
	}
	if o.Backoff < 0 {
		bad = append(bad, fmt.Sprintf("Backoff %s must not be negative", o.Backoff))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrOptions, strings.Join(bad, "; "))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Backoff == 0 {
		o.Backoff = o.TTL / 4
	}
	return nil
}

// checkTiming returns what is wrong with FenceBefore and Check, or "".
func (o *Options) checkTiming() string {
	switch {
	case o.FenceBefore < 0 || o.FenceBefore >= o.TTL:
		return fmt.Sprintf("FenceBefore %s must be between 0 and TTL %s", o.FenceBefore, o.TTL)
	case o.Check < 0:
		return fmt.Sprintf("Check %s must not be negative", o.Check)
	}
	t := o.timing(o.TTL)
	if t.check >= t.window() {
		return fmt.Sprintf("Check %s must be below FenceBefore/2 (%s)", t.check, t.window())
	}
	return ""
}

// timing returns the timing for a lease granted with ttl: defaults follow
// the granted TTL, explicit values are kept.
func (o *Options) timing(ttl time.Duration) timing {
	t := timing{ttl: ttl, fenceBefore: o.FenceBefore, check: o.Check}
	if t.fenceBefore == 0 {
		t.fenceBefore = ttl / 3
	}
	if t.check == 0 {
		t.check = min(ttl/10, t.fenceBefore/4)
	}
	return t
}

// ttlSeconds rounds d up to whole seconds.
func ttlSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
