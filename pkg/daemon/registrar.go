package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/state"
)

// registrar keeps the process registered on a lease, renewing the session
// when etcd lets it expire (for example after a long partition).
type registrar struct {
	cli *clientv3.Client
	st  *state.Store
	ttl time.Duration
	log zerolog.Logger

	mu   sync.Mutex
	sess *concurrency.Session
}

func newRegistrar(cli *clientv3.Client, st *state.Store, ttl time.Duration, log zerolog.Logger) *registrar {
	return &registrar{cli: cli, st: st, ttl: ttl, log: log}
}

func (r *registrar) current() *concurrency.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sess
}

func (r *registrar) register(ctx context.Context, rec state.ServiceRecord) error {
	sess, err := concurrency.NewSession(r.cli, concurrency.WithTTL(int(r.ttl.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("etcd lease: %w", err)
	}
	if err := r.st.PutService(ctx, rec, sess.Lease()); err != nil {
		_ = sess.Close()
		return fmt.Errorf("register: %w", err)
	}
	r.mu.Lock()
	r.sess = sess
	r.mu.Unlock()
	return nil
}

// keep re-registers whenever the session ends while ctx is alive.
func (r *registrar) keep(ctx context.Context, rec state.ServiceRecord) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.current().Done():
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn().Msg("etcd lease lost; registering again")
		b := retry.New(registerBackoffMin, registerBackoffMax)
		for {
			err := r.register(ctx, rec)
			if err == nil {
				r.log.Info().Msg("registered again")
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn().Err(err).Dur("retry_in", b.Next()).Msg("register failed")
			if !b.Wait(ctx) {
				return nil
			}
		}
	}
}

// The wait between attempts to register again doubles from
// registerBackoffMin to registerBackoffMax.
const (
	registerBackoffMin = 200 * time.Millisecond
	registerBackoffMax = 6400 * time.Millisecond
)

// revokeTimeout bounds the revocation of the lease at shutdown.
const revokeTimeout = 2 * time.Second

// close revokes the lease so the registration disappears at once. The
// session's own Close revokes under the session's context, which is the
// run context and already done at shutdown, so revoke under a fresh one.
func (r *registrar) close() {
	s := r.current()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, s.Lease()); err != nil {
		r.log.Warn().Err(err).Msg("revoke etcd lease; the registration expires with its TTL")
	}
	_ = s.Close()
}
