package mysqld

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// PoolOptions configure Pools: one account and one set of limits for every
// address.
type PoolOptions struct {
	User, Password string
	// DialTimeout bounds opening a connection (the driver's timeout); 0 is
	// the operating system's.
	DialTimeout time.Duration
	// IOTimeout bounds each read and write on a connection; 0 is none.
	IOTimeout time.Duration
	// MaxOpen and MaxIdle limit each address's pool; 0 is database/sql's
	// default (unlimited open, 2 idle).
	MaxOpen, MaxIdle int
	// MaxIdleTime closes a connection idle that long; default one minute.
	MaxIdleTime time.Duration
}

// Pools holds one *sql.DB per MySQL address, opened on first use with the
// same options, until Close. It is safe for concurrent use.
type Pools struct {
	o   PoolOptions
	mu  sync.Mutex
	dbs map[string]*sql.DB
}

// NewPools returns an empty set of pools.
func NewPools(o PoolOptions) *Pools {
	if o.MaxIdleTime <= 0 {
		o.MaxIdleTime = time.Minute
	}
	return &Pools{o: o, dbs: map[string]*sql.DB{}}
}

// DB returns the pool for addr (host:port), opening it on first use. It
// does not connect: a connection is made when a statement needs one.
func (p *Pools) DB(addr string) *sql.DB {
	p.mu.Lock()
	defer p.mu.Unlock()
	if db, ok := p.dbs[addr]; ok {
		return db
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = p.o.User, p.o.Password, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = p.o.DialTimeout, p.o.IOTimeout, p.o.IOTimeout
	var conn driver.Connector
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		// Only a malformed configuration fails here; every use of the pool
		// then answers the error.
		conn = failing{fmt.Errorf("mysqld: pool for %s: %w", addr, err)}
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(p.o.MaxOpen)
	if p.o.MaxIdle > 0 {
		db.SetMaxIdleConns(p.o.MaxIdle)
	}
	db.SetConnMaxIdleTime(p.o.MaxIdleTime)
	p.dbs[addr] = db
	return db
}

// Close closes every pool. A later DB opens a new one.
func (p *Pools) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, db := range p.dbs {
		_ = db.Close()
		delete(p.dbs, a)
	}
}

// failing is a connector that cannot connect.
type failing struct{ err error }

func (f failing) Connect(context.Context) (driver.Conn, error) { return nil, f.err }

func (f failing) Driver() driver.Driver { return mysql.MySQLDriver{} }

// SplitAddr splits a host:port address into its host and numeric port.
func SplitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("mysqld: address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("mysqld: address %q: port: %w", addr, err)
	}
	return host, int(port), nil
}
