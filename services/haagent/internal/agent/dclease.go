package agent

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/elect"
)

// dcLeaseRefresh is how often the active agent rewrites the DC lease (it
// lives on the election lease, so the rewrite only repairs a deleted key).
const dcLeaseRefresh = 5 * time.Second

// keepDCLease keeps the DC lease (/dcleases/<dc>) on the election lease of
// l while the tenure lasts: it vanishes when no agent of the DC can renew
// its lease, which the coordinator leader takes as the first sign of a
// lost DC. Writes are fenced by the tenure; failures are retried.
func keepDCLease(l elect.Leadership, st *state.Store, dc, id string, ttl time.Duration, now func() time.Time, log zerolog.Logger) error {
	rec := state.DCLease{DC: dc, Agent: id, Since: now().UTC(), TTL: state.Duration(ttl)}
	var every time.Duration
	for {
		wctx, cancel := context.WithTimeout(l.Ctx, time.Second)
		err := st.PutDCLease(wctx, rec, l.Lease, &l.Fence)
		cancel()
		switch {
		case l.Ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn().Err(err).Msg("could not write the DC lease; retrying")
			every = 200 * time.Millisecond
		default:
			every = dcLeaseRefresh
		}
		select {
		case <-l.Ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
