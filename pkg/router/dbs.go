package router

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// dbKey names one master endpoint; the router keeps one handle per key.
type dbKey struct {
	dc, cluster, addr string
}

func keyOf(m Master) dbKey { return dbKey{dc: m.DC, cluster: m.Cluster, addr: m.Addr} }

// dbEntry is one cached handle. db and err are set before done is closed
// and never change after.
type dbEntry struct {
	done chan struct{}
	db   *sql.DB
	err  error
	// retired is when the entry was first seen unused by every routing
	// table (zero while in use); guarded by dbs.mu.
	retired time.Time
}

// dbs caches the *sql.DB of each master endpoint, opening it on first use
// and closing it a grace period after no routing table names it any more.
type dbs struct {
	open  func(Master) (*sql.DB, error)
	now   func() time.Time
	grace time.Duration
	log   zerolog.Logger

	mu      sync.Mutex
	entries map[dbKey]*dbEntry
	closed  bool
}

// get returns the handle for m, opening it if needed. Concurrent callers
// for the same endpoint share one open; a failed open is not cached.
func (d *dbs) get(ctx context.Context, m Master) (*sql.DB, error) {
	if d.open == nil {
		return nil, ErrNoDB
	}
	k := keyOf(m)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	e, ok := d.entries[k]
	if !ok {
		e = &dbEntry{done: make(chan struct{})}
		d.entries[k] = e
		d.mu.Unlock()
		d.fill(k, e, m)
	} else {
		d.mu.Unlock()
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.db, nil
}

// fill opens the handle of a new entry and publishes the result.
func (d *dbs) fill(k dbKey, e *dbEntry, m Master) {
	db, err := d.open(m)
	if err == nil && db == nil {
		err = fmt.Errorf("router: Options.DB returned no handle for %s/%s at %s", m.DC, m.Cluster, m.Addr)
	}
	if err != nil {
		err = fmt.Errorf("router: open master %s/%s at %s: %w", m.DC, m.Cluster, m.Addr, err)
	}
	e.db, e.err = db, err
	d.mu.Lock()
	if err != nil && d.entries[k] == e {
		delete(d.entries, k)
	}
	late := d.closed && err == nil
	d.mu.Unlock()
	close(e.done)
	if late {
		// The router closed while this handle was being opened.
		_ = db.Close()
	}
	if err == nil {
		d.log.Info().Str("master_dc", m.DC).Str("cluster", m.Cluster).Str("addr", m.Addr).Msg("opened master handle")
	}
}

// sweep retires the handles no routing table names (live), revives retired
// ones named again, and closes those retired for at least the grace period.
func (d *dbs) sweep(live map[dbKey]bool) {
	now := d.now()
	var expired []*dbEntry
	var names []dbKey
	d.mu.Lock()
	for k, e := range d.entries {
		switch {
		case live[k]:
			e.retired = time.Time{}
		case e.retired.IsZero():
			e.retired = now
		case now.Sub(e.retired) >= d.grace:
			select {
			case <-e.done:
			default:
				continue // still opening; next sweep
			}
			delete(d.entries, k)
			expired = append(expired, e)
			names = append(names, k)
		}
	}
	d.mu.Unlock()
	for i, e := range expired {
		if e.db != nil {
			if err := e.db.Close(); err != nil {
				d.log.Warn().Err(err).Str("addr", names[i].addr).Msg("close replaced master handle")
			}
		}
		d.log.Info().Str("master_dc", names[i].dc).Str("cluster", names[i].cluster).Str("addr", names[i].addr).
			Msg("closed replaced master handle")
	}
}

// closeAll closes every handle; get fails with ErrClosed afterwards.
func (d *dbs) closeAll() {
	d.mu.Lock()
	d.closed = true
	entries := d.entries
	d.entries = map[dbKey]*dbEntry{}
	d.mu.Unlock()
	for _, e := range entries {
		select {
		case <-e.done:
		default:
			continue // fill closes it when the open returns
		}
		if e.db != nil {
			_ = e.db.Close()
		}
	}
}
