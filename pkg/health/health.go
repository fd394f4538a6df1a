// Package health serves the endpoints every drplane process exposes:
// /healthz (the process runs), /readyz (its dependencies answer) and
// /metrics (Prometheus).
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Options configures a Server.
type Options struct {
	// Addr is the listen address, host:port; port 0 picks a free one.
	Addr string
	// Registry is gathered for /metrics.
	Registry *prometheus.Registry
	Logger   zerolog.Logger
	// CheckTimeout bounds each readiness check (default 2s).
	CheckTimeout time.Duration
	// CacheFor is how long a /readyz answer is reused (default
	// DefaultCacheFor; negative: never), so that calling it in a loop
	// cannot load etcd or MySQL: the checks run at most once per
	// CacheFor, and concurrent callers wait for one run.
	CacheFor time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Expect names readiness checks the process registers later (after
	// it connected to its dependencies): until each is registered,
	// /readyz fails, so a probe that arrives between Listen and the
	// registration cannot see the process ready.
	Expect []string
}

// DefaultCacheFor is Options.CacheFor when unset.
const DefaultCacheFor = 500 * time.Millisecond

// Server is the health and metrics HTTP server.
type Server struct {
	opts   Options
	mux    *http.ServeMux
	mu     sync.Mutex
	checks map[string]Check
	ln     net.Listener

	// evalMu serialises readiness runs; last is the latest report, taken
	// at lastAt, for the checks of generation lastGen (gen counts
	// AddReadiness calls).
	evalMu  sync.Mutex
	last    readyReport
	lastAt  time.Time
	lastGen uint64
	gen     uint64
}

// New returns a server; call Listen then Run.
func New(o Options) *Server {
	if o.CheckTimeout == 0 {
		o.CheckTimeout = 2 * time.Second
	}
	if o.CacheFor == 0 {
		o.CacheFor = DefaultCacheFor
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: o, mux: http.NewServeMux(), checks: map[string]Check{}}
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("/readyz", s.readyz)
	s.mux.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	return s
}

// AddReadiness registers a named readiness check.
func (s *Server) AddReadiness(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
	s.gen++
}

// Handle adds another handler to the server's mux.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// errNotRegistered is the readiness failure of an expected check not
// registered yet.
var errNotRegistered = errors.New("not registered yet")

type readyReport struct {
	Ready  bool              `json:"ready"`
	Failed map[string]string `json:"failed,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rep := s.ready(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if !rep.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// ready returns the readiness report, from the cache when it is fresh and
// no check was added since.
func (s *Server) ready(ctx context.Context) readyReport {
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	now := s.opts.Now()
	if !s.lastAt.IsZero() && gen == s.lastGen && now.Sub(s.lastAt) < s.opts.CacheFor {
		return s.last
	}
	// The run outlives a caller that hangs up: others may be waiting for it.
	s.last, s.lastAt, s.lastGen = s.evaluate(context.WithoutCancel(ctx)), now, gen
	return s.last
}

// evaluate runs every check.
func (s *Server) evaluate(parent context.Context) readyReport {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)
	rep := readyReport{Ready: true}
	for _, n := range s.opts.Expect {
		if _, ok := checks[n]; !ok {
			if rep.Failed == nil {
				rep.Failed = map[string]string{}
			}
			rep.Failed[n] = errNotRegistered.Error()
			rep.Ready = false
		}
	}
	for _, n := range names {
		ctx, cancel := context.WithTimeout(parent, s.opts.CheckTimeout)
		err := checks[n](ctx)
		cancel()
		if err != nil {
			if rep.Failed == nil {
				rep.Failed = map[string]string{}
			}
			rep.Failed[n] = err.Error()
			rep.Ready = false
		}
	}
	return rep
}

// Listen binds the address so that Addr is known before Run.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.opts.Addr
	}
	return s.ln.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.opts.Logger.Info().Str("addr", s.Addr()).Msg("health server listening")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
