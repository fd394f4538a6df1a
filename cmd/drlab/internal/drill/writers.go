package drill

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/router"
)

// Drill rows: ids above idBase are the drill's, counterBase+shard is a
// shard's counter row, and keyBase upwards are the user ids the drill
// writes (one per shard), far from the ids other writers of a lab use.
const (
	counterBase = int64(9_100_000_000_000_000_000)
	keyBase     = int64(1_000_000_000_000)
	// writeTimeout bounds one write: a master that hangs (paused, waiting
	// for a semi-sync ack) fails it rather than holding a writer.
	writeTimeout = 2 * time.Second
	// workersPerDC is the size of each DC's writer pool.
	workersPerDC = 12
)

// Writers is the drill's load: a writer pool per DC, each with its own SDK
// router for its DC. Every tick writes the next shard (round robin) through
// the pool of the DC that owns it; a write refused with NotOwner moves the
// shard's writes to the owner the refusal names.
type Writers struct {
	keyspace string
	rate     float64
	log      zerolog.Logger
	routers  map[string]*router.Router
	queues   map[string]chan job
	dcs      []string
	keys     []string // per shard, the user id written
	owner    []atomic.Pointer[string]
	// instances maps a MySQL address to its instance name.
	instances map[string]string
	nextID    atomic.Int64
	gate      gate

	mu      sync.Mutex
	writes  []Write
	dropped int // ticks with every worker of the owner DC busy
}

type job struct {
	shard int
}

// WritersOptions configure NewWriters.
type WritersOptions struct {
	Lab      *labfile.Lab
	Conn     grpc.ClientConnInterface
	Keyspace string
	// Rate is the number of writes per second over all shards.
	Rate   float64
	Logger zerolog.Logger
}

// NewWriters builds the routers (one per DC) and opens nothing yet.
func NewWriters(o WritersOptions) (*Writers, error) {
	var ks *labfile.Keyspace
	for i := range o.Lab.Keyspaces {
		if o.Lab.Keyspaces[i].Name == o.Keyspace {
			ks = &o.Lab.Keyspaces[i]
		}
	}
	if ks == nil {
		return nil, fmt.Errorf("drill: keyspace %q is not in the lab", o.Keyspace)
	}
	w := &Writers{keyspace: o.Keyspace, rate: o.Rate, log: o.Logger, routers: map[string]*router.Router{},
		queues: map[string]chan job{}, instances: map[string]string{}, owner: make([]atomic.Pointer[string], ks.Shards)}
	w.nextID.Store(time.Now().UnixMilli() * 1_000_000)
	w.gate.cond.L = &w.gate.mu
	for _, dc := range o.Lab.DCs {
		w.dcs = append(w.dcs, dc.Name)
		for _, in := range dc.MySQL {
			w.instances[in.Addr] = in.Name
		}
		user, pass, database := dc.AppUser, dc.AppPassword, ks.Database
		r, err := router.New(router.Options{
			Conn: o.Conn, DC: dc.Name, Keyspaces: []string{o.Keyspace}, Client: "drill-" + dc.Name,
			Logger: o.Logger,
			DB: func(m router.Master) (*sql.DB, error) {
				return openApp(user, pass, database, m.Addr, writeTimeout)
			},
		})
		if err != nil {
			return nil, err
		}
		w.routers[dc.Name] = r
		w.queues[dc.Name] = make(chan job, workersPerDC)
	}
	return w, nil
}

// openApp opens a handle as the application user.
func openApp(user, pass, database, addr string, timeout time.Duration) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName, cfg.Net, cfg.Addr = user, pass, database, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = timeout, timeout, timeout
	// Failed connections are the drill's data (counted by kind), not log lines.
	cfg.Logger = &mysql.NopLogger{}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(workersPerDC)
	db.SetMaxIdleConns(workersPerDC)
	return db, nil
}

// Run runs the routers and, once they are ready, the writers, until ctx
// ends. ready is closed when the first writes are about to start.
func (w *Writers) Run(ctx context.Context, ready chan<- struct{}) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range w.routers {
		g.Go(func() error {
			err := r.Run(ctx)
			if ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
	g.Go(func() error {
		if err := w.prepare(ctx); err != nil {
			return err
		}
		close(ready)
		for dc, q := range w.queues {
			for range workersPerDC {
				g.Go(func() error { w.work(ctx, dc, q); return nil })
			}
		}
		w.tick(ctx)
		return nil
	})
	return g.Wait()
}

// prepare waits for every router's routes and picks a key per shard.
func (w *Writers) prepare(ctx context.Context) error {
	for dc, r := range w.routers {
		select {
		case <-r.Ready():
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("drill: the router of %s got no routes in 30s", dc)
		}
	}
	r := w.routers[w.dcs[0]]
	w.keys = make([]string, len(w.owner))
	found := 0
	for u := keyBase; found < len(w.keys); u++ {
		if u > keyBase+1_000_000 {
			return fmt.Errorf("drill: no key found for every shard of %s", w.keyspace)
		}
		key := fmt.Sprint(u)
		rt, err := r.Route(w.keyspace, key)
		if err != nil {
			return err
		}
		if rt.Shard >= 0 && rt.Shard < len(w.keys) && w.keys[rt.Shard] == "" {
			w.keys[rt.Shard] = key
			owner := rt.Owner
			w.owner[rt.Shard].Store(&owner)
			found++
		}
	}
	return nil
}

// Keys returns the user id written per shard.
func (w *Writers) Keys() []string { return w.keys }

// Router returns the router of a DC.
func (w *Writers) Router(dc string) *router.Router { return w.routers[dc] }

// tick hands out one write every 1/rate, round robin over the shards.
func (w *Writers) tick(ctx context.Context) {
	t := time.NewTicker(time.Duration(float64(time.Second) / w.rate))
	defer t.Stop()
	shard := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !w.gate.enter() {
			continue
		}
		owner := *w.owner[shard].Load()
		select {
		case w.queues[owner] <- job{shard: shard}:
		default:
			w.gate.leave()
			w.mu.Lock()
			w.dropped++
			w.mu.Unlock()
		}
		shard = (shard + 1) % len(w.keys)
	}
}

func (w *Writers) work(ctx context.Context, dc string, q <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			w.write(ctx, dc, j.shard)
			w.gate.leave()
		}
	}
}

// write makes one attempt and records it.
func (w *Writers) write(ctx context.Context, dc string, shard int) {
	rec := Write{ID: w.nextID.Add(1), Shard: shard, DC: dc, Start: time.Now()}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	err := w.routers[dc].Write(wctx, w.keyspace, w.keys[shard], func(db *sql.DB, rt router.Route) error {
		rec.Instance = w.instances[rt.Master.Addr]
		// One connection for the transaction and the read of its GTID.
		conn, err := db.Conn(wctx)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		tx, err := conn.BeginTx(wctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(wctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, ?, 'drill')",
			rec.ID, w.keys[shard], rec.ID%100000); err != nil {
			return err
		}
		if _, err := tx.ExecContext(wctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, 1, 'drill counter') "+
			"ON DUPLICATE KEY UPDATE amount_cents = amount_cents + 1", counterBase+int64(shard), w.keys[shard]); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		// Acknowledged: the GTID names the write as the system does (its
		// request id). A failed read leaves it unknown, not the write
		// unacknowledged.
		_ = conn.QueryRowContext(wctx, "SELECT @@last_gtid").Scan(&rec.GTID)
		return nil
	})
	if err == nil {
		rec.Ack = time.Now()
	} else {
		rec.Kind = errorKind(err)
		var no *router.NotOwner
		if errors.As(err, &no) && no.Owner != "" {
			owner := no.Owner
			w.owner[shard].Store(&owner)
		}
	}
	if ctx.Err() != nil && err != nil {
		return // the drill is stopping: not a failure of the system
	}
	w.mu.Lock()
	w.writes = append(w.writes, rec)
	w.mu.Unlock()
}

// Pause stops handing out writes and waits for those in flight; Resume
// goes on. The drill pauses the writers while it compares the DCs' data.
func (w *Writers) Pause() { w.gate.pause() }

// Resume lets the writers go on after Pause.
func (w *Writers) Resume() { w.gate.resume() }

// gate counts the writes handed out and holds new ones while paused.
type gate struct {
	mu     sync.Mutex
	cond   sync.Cond
	paused bool
	n      int
}

// enter admits one write unless paused.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused {
		return false
	}
	g.n++
	return true
}

// leave marks an admitted write done.
func (g *gate) leave() {
	g.mu.Lock()
	g.n--
	g.mu.Unlock()
	g.cond.Broadcast()
}

// pause holds new writes and waits for the admitted ones.
func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = true
	for g.n > 0 {
		g.cond.Wait()
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	g.paused = false
	g.mu.Unlock()
}

// Writes returns a copy of the attempts recorded so far.
func (w *Writers) Writes() []Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Write(nil), w.writes...)
}

// Dropped returns how many ticks found the owner DC's pool busy.
func (w *Writers) Dropped() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// errorKind classifies a failed write for the report.
func errorKind(err error) string {
	var me *mysql.MySQLError
	var no *router.NotOwner
	var ne net.Error
	switch {
	case errors.As(err, &no):
		return "not_owner"
	case errors.Is(err, router.ErrShardFrozen):
		return "shard_frozen"
	case errors.Is(err, router.ErrNoMaster):
		return "no_master"
	case errors.Is(err, router.ErrNotReady), errors.Is(err, router.ErrStale):
		return "routes_unavailable"
	case errors.As(err, &me) && me.Number == 1290:
		return "read_only"
	case errors.As(err, &me):
		return fmt.Sprintf("mysql_%d", me.Number)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone):
		return "connection_lost"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection_refused"
	case errors.As(err, &ne):
		return "network"
	}
	return "other"
}
