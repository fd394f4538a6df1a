package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// Defaults of Options.
const (
	DefaultTTL        = 5 * time.Second
	DefaultRetryDelay = 500 * time.Millisecond
	// releaseTimeout bounds resigning and revoking the session on the way out.
	releaseTimeout = 3 * time.Second
)

// Errors.
var (
	// ErrLost means this coordinator lost the leadership it held.
	ErrLost = errors.New("leader: leadership lost")
	// ErrNoLeader means no coordinator holds the leadership right now.
	ErrNoLeader = errors.New("leader: no leader elected")
)

// Options configures a Leader.
type Options struct {
	// Store locates the election key and provides the etcd client.
	Store *state.Store
	// ID names this coordinator; it is the election value, so LeaderID
	// returns it on every coordinator while this one leads.
	ID string
	// TTL is the election session's TTL (DefaultTTL when zero): how long a
	// crashed leader keeps the leadership. etcd raises TTLs below about 1.5
	// times its election timeout.
	TTL time.Duration
	// RetryDelay is the pause before campaigning again after a failure.
	RetryDelay time.Duration
	// Registerer, when set, receives the drplane_coordinator_leader gauge.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
}

// Term is one period of leadership.
type Term struct {
	// Fence is the fencing token of the term: the election key and its
	// create revision.
	Fence state.Fence
	lost  <-chan struct{}
}

// Lost is closed when the term ends.
func (t Term) Lost() <-chan struct{} { return t.lost }

// Context returns a context derived from parent that ends when the term
// does.
func (t Term) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-t.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Leader campaigns for the coordinator leadership. It is safe for
// concurrent use.
type Leader struct {
	o      Options
	prefix string
	gauge  prometheus.Gauge

	mu      sync.Mutex
	term    *Term
	changed chan struct{} // closed and replaced whenever term changes
}

// New returns a Leader; Run campaigns. It fails only when the metric cannot
// be registered.
func New(o Options) (*Leader, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	l := &Leader{
		o:       o,
		prefix:  o.Store.Key("coordinators", "election"),
		changed: make(chan struct{}),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drplane_coordinator_leader",
			Help: "1 while this coordinator is the global leader, else 0.",
		}),
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(l.gauge); err != nil {
			return nil, fmt.Errorf("leader: register metric: %w", err)
		}
	}
	return l, nil
}

// ID returns this coordinator's id.
func (l *Leader) ID() string { return l.o.ID }

// Prefix returns the election prefix.
func (l *Leader) Prefix() string { return l.prefix }

// IsLeader reports whether this coordinator leads now.
func (l *Leader) IsLeader() bool {
	_, ok := l.Current()
	return ok
}

// Fence returns the fencing token while this coordinator leads.
func (l *Leader) Fence() (state.Fence, bool) {
	t, ok := l.Current()
	return t.Fence, ok
}

// Current returns the current term while this coordinator leads.
func (l *Leader) Current() (Term, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		return Term{}, false
	}
	return *l.term, true
}

// Await blocks until this coordinator leads and returns the term, or fails
// when ctx ends.
func (l *Leader) Await(ctx context.Context) (Term, error) {
	for {
		l.mu.Lock()
		t, changed := l.term, l.changed
		l.mu.Unlock()
		if t != nil {
			return *t, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Term{}, ctx.Err()
		}
	}
}

// LeaderID returns the id of the coordinator that leads now, as etcd sees
// it; any coordinator can ask. It fails with ErrNoLeader when none does.
func (l *Leader) LeaderID(ctx context.Context) (string, error) {
	resp, err := l.o.Store.Client().Get(ctx, l.prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("leader: read election: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", ErrNoLeader
	}
	return string(resp.Kvs[0].Value), nil
}

func (l *Leader) setTerm(t *Term) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t != nil {
		l.gauge.Set(1)
	} else {
		l.gauge.Set(0)
	}
	l.term = t
	close(l.changed)
	l.changed = make(chan struct{})
}

// Run campaigns until ctx ends, then resigns. It returns nil when ctx ends.
func (l *Leader) Run(ctx context.Context) error {
	for {
		err := l.campaign(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.o.Logger.Warn().Err(err).Dur("retry_in", l.o.RetryDelay).Msg("coordinator leadership: campaigning again")
		if !retry.Sleep(ctx, l.o.RetryDelay) {
			return nil
		}
	}
}

// campaign runs one session: it waits to be elected, holds the term and
// returns why it ended.
func (l *Leader) campaign(ctx context.Context) error {
	cli := l.o.Store.Client()
	ttl := max(int((l.o.TTL+time.Second-1)/time.Second), 1)
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("leader: new session: %w", err)
	}
	el := concurrency.NewElection(sess, l.prefix)
	defer l.release(sess, el)
	if err := el.Campaign(ctx, l.o.ID); err != nil {
		return fmt.Errorf("leader: campaign: %w", err)
	}
	fence := state.Fence{Key: el.Key(), Rev: el.Rev()}
	lost := make(chan struct{})
	l.setTerm(&Term{Fence: fence, lost: lost})
	l.o.Logger.Info().Str("key", fence.Key).Int64("fence", fence.Rev).Msg("elected coordinator leader")
	defer func() {
		l.setTerm(nil)
		close(lost)
	}()
	err = l.hold(ctx, sess, fence)
	if ctx.Err() == nil {
		l.o.Logger.Warn().Err(err).Int64("fence", fence.Rev).Msg("coordinator leadership lost")
	}
	return err
}

// hold returns when ctx ends (nil) or the term is over: the session ended
// or the election key is gone or was replaced.
func (l *Leader) hold(ctx context.Context, sess *concurrency.Session, fence state.Fence) error {
	cli := l.o.Store.Client()
	from := fence.Rev + 1
	for {
		wctx, cancel := context.WithCancel(ctx)
		wch := cli.Watch(clientv3.WithRequireLeader(wctx), fence.Key, clientv3.WithRev(from))
		err := func() error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-sess.Done():
					return fmt.Errorf("%w: session %x ended", ErrLost, sess.Lease())
				case resp, ok := <-wch:
					if !ok || resp.Err() != nil {
						return errWatch
					}
					for _, ev := range resp.Events {
						if ev.Type == clientv3.EventTypeDelete {
							return fmt.Errorf("%w: election key %s deleted", ErrLost, fence.Key)
						}
					}
					from = resp.Header.Revision + 1
				}
			}
		}()
		cancel()
		if !errors.Is(err, errWatch) {
			return err
		}
		// The watch broke (etcd lost its leader, or compaction): check the
		// key directly before watching again.
		if err := l.stillHeld(ctx, sess, fence, &from); err != nil {
			return err
		}
	}
}

var errWatch = errors.New("leader: election watch ended")

// stillHeld checks the election key after a broken watch and sets *from to
// the revision to watch from.
func (l *Leader) stillHeld(ctx context.Context, sess *concurrency.Session, fence state.Fence, from *int64) error {
	for {
		gctx, cancel := context.WithTimeout(ctx, l.o.TTL)
		resp, err := l.o.Store.Client().Get(gctx, fence.Key)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && (len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != fence.Rev):
			return fmt.Errorf("%w: election key %s gone", ErrLost, fence.Key)
		case err == nil:
			*from = resp.Header.Revision + 1
			return nil
		}
		t := time.NewTimer(l.o.RetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-sess.Done():
			t.Stop()
			return fmt.Errorf("%w: session %x ended", ErrLost, sess.Lease())
		case <-t.C:
		}
	}
}

// release resigns (when elected) and revokes the session's lease, with a
// context of its own since the caller's has usually ended.
func (l *Leader) release(sess *concurrency.Session, el *concurrency.Election) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if el.Key() != "" {
		if err := el.Resign(ctx); err != nil {
			l.o.Logger.Debug().Err(err).Msg("resign coordinator leadership")
		}
	}
	sess.Orphan()
	if _, err := l.o.Store.Client().Revoke(ctx, sess.Lease()); err != nil {
		l.o.Logger.Debug().Err(err).Msg("revoke election session")
	}
}
