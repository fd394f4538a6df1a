package apply

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/state"
)

// MasterDB is the handle to the DC's current master (pkg/masterdb.Resolver
// implements it). DB returns the pool of the master in the current record,
// or an error while none is known; a new master means a new pool.
type MasterDB interface {
	DB() (*sql.DB, state.MasterRecord, error)
}

// Session variables of the apply connection: the binlog flag that keeps
// the DC's reship from shipping the changes back, and UTC so that TIMESTAMP
// values travelling as text mean the same instant everywhere.
const (
	sessionSet   = "SET SESSION skip_replication = 1, time_zone = '+00:00'"
	sessionReset = "SET SESSION skip_replication = 0, time_zone = DEFAULT"
	resetTimeout = 2 * time.Second
)

// session is the apply path's dedicated connection to the current master,
// kept across batches while the master stays the same. Its session
// variables are reset before it goes back to the pool; a connection that
// cannot be reset is discarded instead.
type session struct {
	master MasterDB
	log    zerolog.Logger
	pool   *sql.DB
	conn   *sql.Conn
	rec    state.MasterRecord
}

// get returns the connection to the current master, opening one when there
// is none or the master changed.
func (s *session) get(ctx context.Context) (*sql.Conn, error) {
	pool, rec, err := s.master.DB()
	if err != nil {
		s.release()
		return nil, err
	}
	if s.conn != nil && s.pool == pool {
		return s.conn, nil
	}
	s.release()
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, sessionSet); err != nil {
		discard(conn)
		return nil, err
	}
	s.pool, s.conn, s.rec = pool, conn, rec
	s.log.Debug().Str("master", rec.Instance).Str("addr", rec.Addr).Msg("apply connection opened")
	return conn, nil
}

// release resets the connection's session variables and returns it to its
// pool, or discards it when the reset fails.
func (s *session) release() {
	if s.conn == nil {
		return
	}
	conn := s.conn
	s.conn, s.pool = nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	if _, err := conn.ExecContext(ctx, sessionReset); err != nil {
		discard(conn)
		return
	}
	_ = conn.Close()
}

// discard closes the driver connection instead of pooling it, so that its
// session variables never reach another user of the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// currentPool returns the current master's pool, for statements outside
// the apply session (DDL).
func (s *session) currentPool() (*sql.DB, error) {
	pool, _, err := s.master.DB()
	return pool, err
}
