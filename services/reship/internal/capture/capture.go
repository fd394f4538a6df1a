package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
)

// Defaults of Options.
const (
	DefaultHeartbeat   = time.Second
	DefaultReadTimeout = 5 * time.Second
	// closeWait bounds how long closing a syncer may take.
	closeWait = 3 * time.Second
)

// Options configure a Capturer.
type Options struct {
	// ServerID is the replica server_id the dump connection registers
	// with; it must differ from every server's and every other reader's.
	ServerID uint32
	// User needs REPLICATION SLAVE.
	User, Password string
	// Filter says whether rows of a table are wanted; nil wants none.
	Filter func(schema, table string) bool
	// Heartbeat is the master's heartbeat period on the dump connection and
	// ReadTimeout how long a silent stream is trusted (defaults
	// DefaultHeartbeat, DefaultReadTimeout).
	Heartbeat, ReadTimeout time.Duration
	Logger                 zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Capturer reads transactions from a master's binlog.
type Capturer struct {
	o         Options
	streaming atomic.Bool
}

// New returns a capturer.
func New(o Options) *Capturer {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.ReadTimeout <= o.Heartbeat {
		o.ReadTimeout = max(DefaultReadTimeout, 3*o.Heartbeat)
	}
	if o.Filter == nil {
		o.Filter = func(string, string) bool { return false }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Capturer{o: o}
}

// Streaming reports whether a stream is running and has received its first
// event.
func (c *Capturer) Streaming() bool { return c.streaming.Load() }

// Stream reads the binlog of the master at addr (host:port) from the GTID
// position from ("" is the start of the master's oldest binlog) and calls
// handle with every complete transaction, in commit order. It returns nil
// when ctx ends, the error of handle, or an error wrapping ErrStream when
// the stream cannot start or breaks; a transaction cut off is discarded.
func (c *Capturer) Stream(ctx context.Context, addr, from string, handle func(*Txn) error) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: master address %q: %w", ErrStream, addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("%w: master address %q: %w", ErrStream, addr, err)
	}
	gset, err := mysql.ParseMariadbGTIDSet(from)
	if err != nil {
		return fmt.Errorf("%w: position %q: %w", ErrStream, from, err)
	}
	gate := &dialGate{}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                c.o.ServerID,
		Flavor:                  mysql.MariaDBFlavor,
		Host:                    host,
		Port:                    uint16(port),
		User:                    c.o.User,
		Password:                c.o.Password,
		HeartbeatPeriod:         c.o.Heartbeat,
		ReadTimeout:             c.o.ReadTimeout,
		DisableRetrySync:        true,
		TimestampStringLocation: time.UTC,
		Dialer:                  gate.dial,
		Logger:                  newSlog(c.o.Logger),
		EventCacheCount:         4096,
	})
	defer c.closeSyncer(syncer, gate)

	streamer, err := syncer.StartSyncGTID(gset)
	if err != nil {
		return fmt.Errorf("%w: start at %q on %s: %w", ErrStream, from, addr, err)
	}
	asm := newAssembler(c.o.Filter, c.o.Now, func(gtid string, rows int) {
		c.o.Logger.Error().Str("gtid", gtid).Int("rows", rows).
			Msg("transaction without a commit event (XA?) discarded: its rows are not shipped")
	})
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: %s: %w", ErrStream, addr, err)
		}
		c.streaming.Store(true)
		txn, err := asm.feed(ev)
		if err != nil {
			return err
		}
		if txn == nil {
			continue
		}
		if err := handle(txn); err != nil {
			return err
		}
	}
}

// closeSyncer closes the syncer without letting it open new connections
// (it would try to KILL its dump thread through a fresh one, which can hang
// on a master that is paused), and bounds the wait.
func (c *Capturer) closeSyncer(s *replication.BinlogSyncer, gate *dialGate) {
	c.streaming.Store(false)
	gate.closed.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Close()
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		c.o.Logger.Warn().Dur("waited", closeWait).Msg("binlog syncer still closing; leaving it")
	}
}

// errGateClosed refuses the connections a closing syncer tries to open.
var errGateClosed = errors.New("capture: syncer closing")

// dialGate dials TCP until it is closed.
type dialGate struct {
	closed atomic.Bool
	d      net.Dialer
}

func (g *dialGate) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if g.closed.Load() {
		return nil, errGateClosed
	}
	return g.d.DialContext(ctx, network, address)
}

// CurrentPosition returns the master's gtid_binlog_pos: the position after
// the last transaction in its binlog.
func (c *Capturer) CurrentPosition(ctx context.Context, addr string) (string, error) {
	binlog, _, _, err := c.Positions(ctx, addr)
	return binlog, err
}

// Positions returns the master's gtid_binlog_pos, gtid_slave_pos and
// server_id. A promoted replica keeps its gtid_slave_pos (RESET SLAVE ALL
// leaves it): the last transaction it applied from the master before it.
func (c *Capturer) Positions(ctx context.Context, addr string) (binlog, slave string, serverID uint32, err error) {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.o.User, c.o.Password, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = c.o.ReadTimeout, c.o.ReadTimeout, c.o.ReadTimeout
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return "", "", 0, fmt.Errorf("%w: %w", ErrStream, err)
	}
	db := sql.OpenDB(conn)
	defer func() { _ = db.Close() }()
	q := "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos, @@GLOBAL.server_id"
	if err := db.QueryRowContext(ctx, q).Scan(&binlog, &slave, &serverID); err != nil {
		return "", "", 0, fmt.Errorf("%w: read GTID positions on %s: %w", ErrStream, addr, err)
	}
	return binlog, slave, serverID, nil
}

// ErrorCode returns the MySQL error number carried by err, or 0.
func ErrorCode(err error) uint16 {
	var me *mysql.MyError
	if errors.As(err, &me) {
		return me.Code
	}
	return 0
}
