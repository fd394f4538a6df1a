// Package masterdb keeps a database/sql handle to the current master of one
// (dc, cluster), following the master record in etcd as the HA agent
// changes it.
package masterdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/state"
)

// ErrNoMaster means no master record exists (yet) for the cluster.
var ErrNoMaster = errors.New("masterdb: no master known")

// Options configures a Resolver.
type Options struct {
	Store       *state.Store
	DC, Cluster string
	User        string
	Password    string
	Database    string
	Logger      zerolog.Logger
	// Timeout is the connect/read/write timeout of the handle (default 2s).
	Timeout time.Duration
}

// Resolver holds the handle to the current master.
type Resolver struct {
	o    Options
	mu   sync.Mutex
	db   *sql.DB
	rec  state.MasterRecord
	open bool
}

// New returns a resolver; Run keeps it current.
func New(o Options) *Resolver {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	return &Resolver{o: o}
}

// DB returns the handle to the current master and its record.
func (r *Resolver) DB() (*sql.DB, state.MasterRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.open {
		return nil, state.MasterRecord{}, fmt.Errorf("%w for %s/%s", ErrNoMaster, r.o.DC, r.o.Cluster)
	}
	return r.db, r.rec, nil
}

// Check pings the current master; it is a readiness check.
func (r *Resolver) Check(ctx context.Context) error {
	db, rec, err := r.DB()
	if err != nil {
		return err
	}
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("master %s (%s): %w", rec.Instance, rec.Addr, err)
	}
	return nil
}

func (r *Resolver) use(rec state.MasterRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open && r.rec.Addr == rec.Addr && r.rec.Term == rec.Term {
		return
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = r.o.User, r.o.Password, "tcp", rec.Addr, r.o.Database
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = r.o.Timeout, r.o.Timeout, r.o.Timeout
	cfg.ParseTime = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		r.o.Logger.Error().Err(err).Msg("bad master DSN")
		return
	}
	if r.db != nil {
		_ = r.db.Close()
	}
	r.db, r.rec, r.open = sql.OpenDB(conn), rec, true
	r.o.Logger.Info().Str("master", rec.Instance).Str("addr", rec.Addr).Int64("term", rec.Term).Msg("following master")
}

// Run loads the master record and follows its changes until ctx ends.
func (r *Resolver) Run(ctx context.Context) error {
	defer func() {
		r.mu.Lock()
		if r.db != nil {
			_ = r.db.Close()
		}
		r.open = false
		r.mu.Unlock()
	}()
	for ctx.Err() == nil {
		rec, rev, err := r.o.Store.Master(ctx, r.o.DC, r.o.Cluster)
		switch {
		case err == nil:
			r.use(rec)
		case errors.Is(err, state.ErrNotFound):
			r.o.Logger.Warn().Str("cluster", r.o.Cluster).Msg("no master record yet")
		default:
			r.o.Logger.Warn().Err(err).Msg("read master record")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		key := r.o.Store.Key("masters", r.o.DC, r.o.Cluster)
		for ev := range state.Watch[state.MasterRecord](ctx, r.o.Store, key, false, rev+1) {
			if !ev.Deleted {
				r.use(ev.Value)
			}
		}
	}
	return nil
}

// Endpoint is the configuration block of a service that works on a DC's
// current master: which cluster and with which account.
type Endpoint struct {
	Cluster  string        `yaml:"cluster"`
	Database string        `yaml:"database,omitempty"`
	User     string        `yaml:"user"`
	Password config.Secret `yaml:"password"`
}

// Validate names the missing field under prefix.
func (e Endpoint) Validate(prefix string) error {
	if e.Cluster == "" {
		return config.Invalid(prefix+".cluster", "required")
	}
	if e.User == "" {
		return config.Invalid(prefix+".user", "required")
	}
	return nil
}

// Resolver returns a resolver for the endpoint in dc.
func (e Endpoint) Resolver(st *state.Store, dc string, log zerolog.Logger) *Resolver {
	return New(Options{Store: st, DC: dc, Cluster: e.Cluster, User: e.User, Password: e.Password.Reveal(), Database: e.Database, Logger: log})
}
