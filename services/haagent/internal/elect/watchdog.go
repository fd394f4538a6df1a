package elect

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/retry"
)

// term is one lease and what the watchdog knows about it. Fields other than
// last are only used by the goroutine running the term.
type term struct {
	e     *Elector
	log   *zerolog.Logger
	lease clientv3.LeaseID
	tm    timing
	last  atomic.Int64 // Options.Now of the last renewal, in Unix nanoseconds

	key    string // the candidacy key, once leading
	rev    int64  // its create revision: the fencing token
	spp    bool
	fenced bool
	// members are the etcd members' client URLs, learned as the tenure
	// began (see singlePointLimit); nil until then.
	members atomic.Pointer[[]string]
	lost    string // why the lease counts as lost
}

// outcome says why a tenure ended.
type outcome int

const (
	endStop outcome = iota
	endAbandon
	endLeadReturned
	endFenced
	endLeaseLost
)

// cause is the cancel cause of the leadership context.
func (e outcome) cause(ctx context.Context) error {
	switch e {
	case endLeadReturned:
		return ErrLeadReturned
	case endFenced:
		return ErrSelfFenced
	case endLeaseLost:
		return ErrLeaseLost
	default:
		return context.Cause(ctx)
	}
}

// verdict is what a probe of etcd concluded.
type verdict int

const (
	unknown   verdict = iota // no answer (yet): out of reach, or the renewal failed
	renewed                  // the lease was renewed through the probe
	noQuorum                 // etcd answers but has no leader
	leaseGone                // the lease or the candidacy key no longer exists
	stopped                  // ctx ended
)

// Probe pacing.
const (
	minProbeSlice = 20 * time.Millisecond
	probePause    = 10 * time.Millisecond
)

func (t *term) now() time.Time { return t.e.o.Now() }

func (t *term) lastRenewal() time.Time { return time.Unix(0, t.last.Load()) }

// renewed records a renewal seen at now; the stamp only moves forward.
func (t *term) renewed(now time.Time) {
	n := now.UnixNano()
	for {
		old := t.last.Load()
		if n <= old || t.last.CompareAndSwap(old, n) {
			return
		}
	}
}

// keepAlive keeps the lease alive and stamps every renewal until ctx ends.
// The client closes the channel when the lease is gone or when no answer
// came for a whole TTL, which also happens while etcd has no quorum; then it
// subscribes again, so renewals resume when etcd does.
func (t *term) keepAlive(ctx context.Context) {
	for {
		ch, err := t.e.o.Client.KeepAlive(ctx, t.lease)
		if err == nil {
			for resp := range ch {
				if resp.TTL > 0 {
					t.renewed(t.now())
				}
			}
		}
		if !retry.Sleep(ctx, t.tm.check) {
			return
		}
	}
}

// supervise watches a tenure until it ends, and says why. When lead
// returned, its error is returned too.
func (t *term) supervise(ctx context.Context, sess *concurrency.Session, leadDone <-chan error) (outcome, error) {
	tick := time.NewTicker(t.tm.check)
	defer tick.Stop()
	sessDone := sess.Done()
	// The candidacy key goes when the lease is revoked or expires; the watch
	// says so before the next renewal attempt would.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keyEvents := t.e.o.Client.Watch(wctx, t.key, clientv3.WithRev(t.rev+1))
	for {
		select {
		case <-ctx.Done():
			if abandoned(ctx) {
				return endAbandon, nil
			}
			return endStop, nil
		case err := <-leadDone:
			return endLeadReturned, err
		case wr, ok := <-keyEvents:
			if !ok || wr.Err() != nil {
				keyEvents = nil // compacted or cancelled: the watchdog still judges the lease
				continue
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					t.lost = "election lease lost: candidacy key deleted"
					return endLeaseLost, nil
				}
			}
		case <-sessDone:
			if !t.spp {
				// The client closes the keepalive after a TTL without answers;
				// that also happens when quorum was lost just before the
				// watchdog's tick could tell. Ask etcd before calling the
				// lease lost.
				if v, _ := t.probe(ctx, t.tm.window()); v == noQuorum {
					t.setSPP(true)
				}
			}
			if t.spp {
				// The client gave the keepalive up after a TTL without answers, as it
				// does while etcd has no quorum; keepAlive subscribes again and the
				// watchdog keeps judging the lease.
				sessDone = nil
				t.log.Debug().Msg("session keepalive closed while etcd has no quorum")
				continue
			}
			t.lost = "election lease lost: the etcd session ended"
			return endLeaseLost, nil
		case <-tick.C:
			if reason := t.watch(ctx); reason != "" {
				t.fence(ctx, reason)
				return endFenced, nil
			}
		}
	}
}

// watch is one watchdog tick while leading: it returns why the agent must
// fence itself, or "" to keep leading.
func (t *term) watch(ctx context.Context) string {
	now := t.now()
	age := now.Sub(t.lastRenewal())
	if age < t.tm.threshold() {
		t.setSPP(false)
		return ""
	}
	budget, ok := decisionBudget(now, t.lastRenewal(), t.tm, t.spp)
	if !ok {
		return fmt.Sprintf("election lease not renewed for %s, past the time to decide", age.Round(time.Millisecond))
	}
	v, err := t.probe(ctx, budget)
	switch v {
	case renewed:
		t.setSPP(false)
		return ""
	case noQuorum:
		t.setSPP(true)
		return t.singlePointLimit(ctx, age)
	case stopped:
		return ""
	case leaseGone:
		return fmt.Sprintf("election lease lost: %v", err)
	default:
		return fmt.Sprintf("election lease not renewed for %s and etcd out of reach: %v", age.Round(time.Millisecond), err)
	}
}

// decisionBudget is how long the watchdog may take to decide, first seeing
// at now a lease last renewed at last: FenceBefore/2, and no later than
// FenceBefore/2 before the lease can expire unless etcd is known to have no
// quorum (then no lease can expire). ok is false when that time has passed.
func decisionBudget(now, last time.Time, tm timing, spp bool) (time.Duration, bool) {
	budget := tm.window()
	if !spp {
		budget = min(budget, last.Add(tm.ttl-tm.window()).Sub(now))
	}
	return budget, budget > 0
}

// probe asks etcd, for up to budget, whether it has a quorum and whether
// the lease still stands, and renews the lease when it can.
func (t *term) probe(ctx context.Context, budget time.Duration) (verdict, error) {
	deadline := time.Now().Add(budget)
	slice := max(t.tm.window()/3, minProbeSlice)
	var lastErr error
	for {
		remaining := time.Until(deadline)
		if ctx.Err() != nil {
			return stopped, ctx.Err()
		}
		if remaining <= 0 {
			if lastErr == nil {
				lastErr = context.DeadlineExceeded
			}
			return unknown, lastErr
		}
		v, err := t.probeOnce(ctx, min(slice, remaining))
		if v != unknown {
			return v, err
		}
		lastErr = err
		if !retry.Sleep(ctx, min(probePause, max(time.Until(deadline), 0))) {
			return stopped, ctx.Err()
		}
	}
}

// errKeyGone: the candidacy key no longer exists.
var errKeyGone = errors.New("candidacy key deleted")

// probeOnce is one attempt. The read is a transaction, which the client does
// not retry, holding a serializable get, which the member answers by itself:
// a member that knows it has no leader says so at once ("no leader"), a
// member out of reach does not answer. A plain Get would not do: the client
// retries "no leader" until the context ends. A member that answers also
// shows whether the candidacy key still exists; the renewal goes through
// the raft leader.
func (t *term) probeOnce(ctx context.Context, slice time.Duration) (verdict, error) {
	pctx, cancel := context.WithTimeout(ctx, slice)
	defer cancel()
	cli := t.e.o.Client
	resp, err := cli.Txn(clientv3.WithRequireLeader(pctx)).
		Then(clientv3.OpGet(t.key, clientv3.WithSerializable())).Commit()
	if err != nil {
		if isNoLeader(err) {
			return noQuorum, err
		}
		return unknown, err
	}
	if resp.Header.GetRevision() >= t.rev && len(resp.Responses) == 1 {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || kvs[0].CreateRevision != t.rev {
			return leaseGone, errKeyGone
		}
	}
	_, err = cli.KeepAliveOnce(pctx, t.lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return leaseGone, err
	case err != nil && isNoLeader(err):
		return noQuorum, err
	case err != nil:
		return unknown, err
	}
	t.renewed(t.now())
	return renewed, nil
}

// isNoLeader reports whether err is etcd's "no leader", in its client or
// gRPC form.
func isNoLeader(err error) bool {
	return errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader) ||
		rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader)
}

// setSPP enters or leaves single-point-primary mode.
func (t *term) setSPP(v bool) {
	if t.spp == v {
		return
	}
	t.spp = v
	t.e.spp.Store(v)
	t.e.mSPP.Set(gauge(v))
	if v {
		t.log.Warn().Time("last_renewal", t.lastRenewal()).
			Msg("etcd has no quorum: single-point primary, keeping leadership without fencing")
	} else {
		t.log.Info().Msg("etcd quorum is back: single-point primary mode over")
	}
}

// fence calls SelfFence once per tenure.
func (t *term) fence(ctx context.Context, reason string) {
	if t.fenced {
		return
	}
	t.fenced = true
	t.e.mFence.Inc()
	budget := max(t.lastRenewal().Add(t.tm.ttl).Sub(t.now()), t.tm.fenceBefore)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	t.log.Error().Str("reason", reason).Dur("budget", budget).Msg("self-fencing")
	began := time.Now()
	t.e.o.SelfFence(fctx, reason)
	t.log.Warn().Dur("took", time.Since(began)).Msg("self-fenced; giving leadership up")
}
