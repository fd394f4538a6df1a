// Package durable tells reship when a transaction it read from the master's
// binlog is durable in the DC in the semi-sync sense, so that it is shipped
// to the other DCs only then (docs/adr/0010-ship-only-durable.md).
//
// A transaction is durable when one of the master's replicas has received
// it (its Gtid_IO_Pos, or Gtid_Slave_Pos, reaches the transaction's
// sequence in its domain, and its Master_Server_Id is the master's
// server_id): the in-DC failover promotes the most advanced replica by what
// it received, so such a transaction survives a failover. It is also
// released when the master was seen, after the transaction was read,
// writable and not waiting for semi-sync acknowledgements (semi-sync
// disabled, switched off after its timeout, or no replica attached with
// wait_no_slave off): the master then acknowledges commits to clients
// without any replica, and what it acknowledged must reach the other DCs. A transaction of a master
// that waits for an acknowledgement that never comes (replicas stalled,
// the master killed before the timeout) is never released: no client got
// an OK for it, and the in-DC repair of the deposed master discards it.
package durable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
)

// Defaults of Options.
const (
	// DefaultPollGap is the shortest time between two polls of one
	// instance while a transaction waits.
	DefaultPollGap = time.Millisecond
	// DefaultQueryTimeout bounds one poll of one instance.
	DefaultQueryTimeout = time.Second
	// refreshEvery is how often the set of replicas is read again.
	refreshEvery = time.Second
	// errorPause is the pause after a poll failed.
	errorPause = 100 * time.Millisecond
)

// ErrBadGTID means Wait was given a GTID it cannot parse.
var ErrBadGTID = errors.New("durable: bad GTID")

// Options configure a Gate.
type Options struct {
	// Master is the address (host:port) the binlog is read from, and
	// MasterID its server_id: only replicas whose Master_Server_Id is
	// MasterID count, and the master's own state only while the server at
	// Master answers with it.
	Master   string
	MasterID uint32
	// Replicas returns the addresses of the cluster's other instances; it is
	// called again every second. Instances that do not replicate from the
	// master are ignored by their Master_Server_Id.
	Replicas func() []string
	// User and Password: the account needs SLAVE MONITOR (SHOW SLAVE
	// STATUS) on the replicas; the master's status needs no privilege.
	User, Password string
	// PollGap and QueryTimeout (defaults DefaultPollGap,
	// DefaultQueryTimeout).
	PollGap, QueryTimeout time.Duration
	// Observed is called after each poll of an instance with its address
	// and error (nil when it answered); optional.
	Observed func(addr string, err error)
	Logger   zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// masterObs is one poll of the master.
type masterObs struct {
	// started is when the poll was sent: what it saw is true of that time
	// or later.
	started  time.Time
	serverID uint32
	// waits is whether the master waits for semi-sync acknowledgements.
	waits bool
}

// replicaObs is one poll of a replica.
type replicaObs struct {
	masterID uint32
	received gtid.Pos
	applied  gtid.Pos
}

// Gate releases transactions once they are durable. Run polls the
// instances while some Wait is waiting; a Gate serves one capture session
// (one master).
type Gate struct {
	o Options

	mu sync.Mutex
	// masterID is Options.MasterID.
	masterID uint32
	master   masterObs
	haveM    bool
	replicas map[string]replicaObs
	// changed is closed and replaced after each poll.
	changed chan struct{}
	// demand is closed and replaced when a Wait starts waiting; waiting
	// counts the waiters.
	demand  chan struct{}
	waiting int
}

// New returns a gate; Run must run for Wait to return.
func New(o Options) *Gate {
	if o.PollGap <= 0 {
		o.PollGap = DefaultPollGap
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Replicas == nil {
		o.Replicas = func() []string { return nil }
	}
	return &Gate{o: o, masterID: o.MasterID, replicas: map[string]replicaObs{}, changed: make(chan struct{}), demand: make(chan struct{})}
}

// Wait returns once the transaction id (a GTID), read from the binlog at
// readAt, is durable, or with ctx's error.
func (g *Gate) Wait(ctx context.Context, id string, readAt time.Time) error {
	t, err := gtid.Parse(id)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrBadGTID, id, err)
	}
	registered := false
	defer func() {
		if registered {
			g.mu.Lock()
			g.waiting--
			g.mu.Unlock()
		}
	}()
	for {
		g.mu.Lock()
		if g.durableLocked(t, readAt) {
			g.mu.Unlock()
			return nil
		}
		if !registered {
			registered = true
			g.waiting++
			close(g.demand)
			g.demand = make(chan struct{})
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Durable reports whether transaction id read at readAt is durable by the
// last polls (it never polls).
func (g *Gate) Durable(id string, readAt time.Time) bool {
	t, err := gtid.Parse(id)
	if err != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.durableLocked(t, readAt)
}

func (g *Gate) durableLocked(t gtid.GTID, readAt time.Time) bool {
	if g.masterID == 0 {
		return false
	}
	if g.haveM && g.master.serverID == g.masterID && !g.master.waits && !g.master.started.Before(readAt) {
		return true
	}
	for _, r := range g.replicas {
		if r.masterID != g.masterID {
			continue
		}
		for _, p := range []gtid.Pos{r.received, r.applied} {
			if seq, ok := p.Seq(t.Domain); ok && seq >= t.Seq {
				return true
			}
		}
	}
	return false
}

// Run polls the master and the replicas while transactions wait, until
// ctx ends.
func (g *Gate) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	pollers := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range pollers {
			cancel()
		}
	}()
	start := func(addr string, master bool) {
		pctx, cancel := context.WithCancel(ctx)
		pollers[addr] = cancel
		wg.Go(func() { g.poll(pctx, addr, master) })
	}
	start(g.o.Master, true)
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		want := map[string]bool{}
		for _, a := range g.o.Replicas() {
			if a == "" || a == g.o.Master {
				continue
			}
			want[a] = true
			if _, ok := pollers[a]; !ok {
				start(a, false)
			}
		}
		for a, cancel := range pollers {
			if a != g.o.Master && !want[a] {
				cancel()
				delete(pollers, a)
				g.mu.Lock()
				delete(g.replicas, a)
				g.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll polls one instance whenever a transaction waits, at most every
// PollGap, until ctx ends.
func (g *Gate) poll(ctx context.Context, addr string, master bool) {
	db, err := g.open(addr)
	if err != nil {
		g.o.Logger.Error().Err(err).Str("addr", addr).Msg("durability gate: cannot open a connection pool")
		return
	}
	defer func() { _ = db.Close() }()
	failing := false
	for ctx.Err() == nil {
		g.mu.Lock()
		idle := g.waiting == 0
		demand := g.demand
		g.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return
			case <-demand:
			}
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, g.o.QueryTimeout)
		if master {
			err = g.pollMaster(qctx, db)
		} else {
			err = g.pollReplica(qctx, db, addr)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if g.o.Observed != nil {
			g.o.Observed(addr, err)
		}
		pause := g.o.PollGap
		if err != nil {
			pause = errorPause
			if !failing {
				g.o.Logger.Warn().Err(err).Str("addr", addr).Bool("master", master).
					Msg("durability gate: instance not answering; its position does not count")
			}
		} else if failing {
			g.o.Logger.Info().Str("addr", addr).Msg("durability gate: instance answers again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

func (g *Gate) open(addr string) (*sql.DB, error) {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = g.o.User, g.o.Password, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = g.o.QueryTimeout, g.o.QueryTimeout, g.o.QueryTimeout
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("durable: %s: %w", addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// masterQuery reads whether the master waits for semi-sync
// acknowledgements: semi-sync is active (Rpl_semi_sync_master_status) and
// a replica is attached or the master waits without one
// (rpl_semi_sync_master_wait_no_slave), or it is read-only — a fenced
// master whose waiting commits are released by its demotion (semi-sync
// turned off, sessions killed) acknowledges none of them to a client. It
// needs no privilege and does not block while commits wait for an
// acknowledgement.
const masterQuery = `SELECT @@GLOBAL.server_id, @@GLOBAL.read_only, @@GLOBAL.rpl_semi_sync_master_wait_no_slave,
	s.master_status, s.master_clients
FROM (SELECT
	MAX(IF(VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS', VARIABLE_VALUE, NULL)) AS master_status,
	MAX(IF(VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS', VARIABLE_VALUE, NULL)) AS master_clients
	FROM information_schema.GLOBAL_STATUS
	WHERE VARIABLE_NAME IN ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS')) AS s`

func (g *Gate) pollMaster(ctx context.Context, db *sql.DB) error {
	started := g.o.Now()
	var (
		id                    uint32
		readOnly, waitNoSlave bool
		status, client        sql.NullString
	)
	if err := db.QueryRowContext(ctx, masterQuery).Scan(&id, &readOnly, &waitNoSlave, &status, &client); err != nil {
		return fmt.Errorf("durable: master status: %w", err)
	}
	waits := readOnly || (status.String == "ON" && (waitNoSlave || (client.Valid && client.String != "0")))
	g.mu.Lock()
	defer g.mu.Unlock()
	g.master, g.haveM = masterObs{started: started, serverID: id, waits: waits}, true
	g.notifyLocked()
	return nil
}

func (g *Gate) pollReplica(ctx context.Context, db *sql.DB, addr string) error {
	st, err := mysqld.ReadReplicaStatus(ctx, db)
	if err != nil {
		return err
	}
	obs := replicaObs{masterID: st.MasterServerID}
	// A position that does not parse counts as nothing received.
	obs.received, _ = gtid.ParsePos(st.GTIDIOPos)
	obs.applied, _ = gtid.ParsePos(st.GTIDSlavePos)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.replicas[addr] = obs
	g.notifyLocked()
	return nil
}

func (g *Gate) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}
