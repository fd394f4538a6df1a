package failover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
)

// ErrFenceIncomplete means an instance could not be confirmed read-only.
var ErrFenceIncomplete = errors.New("failover: fence incomplete")

// Creds are the accounts the agent uses: its own (all privileges) and the
// replication account replicas connect with.
type Creds struct {
	User, Password         string
	ReplUser, ReplPassword string
}

// Ops runs single-instance changes. Its connection pools are its own, apart
// from the observer's, so a slow probe never delays a fence.
type Ops struct {
	creds    Creds
	semiSync time.Duration
	step     time.Duration
	pools    *mysqld.Pools
}

// NewOps returns Ops. semiSync is the semi-sync timeout set at promotion;
// step bounds each statement that may hang on an unreachable peer.
func NewOps(c Creds, semiSync, step time.Duration) *Ops {
	return &Ops{creds: c, semiSync: semiSync, step: step, pools: mysqld.NewPools(mysqld.PoolOptions{
		User: c.User, Password: c.Password, DialTimeout: step, MaxOpen: 4, MaxIdle: 4,
	})}
}

// Close closes every pool.
func (o *Ops) Close() { o.pools.Close() }

func (o *Ops) db(addr string) *sql.DB { return o.pools.DB(addr) }

// Position is a fresh read of an instance's replication position.
type Position struct {
	ReadOnly bool
	// Received is what the instance holds or has in its relay log: the IO
	// thread's position for a replica, the binlog position otherwise.
	Received gtid.Pos
	// Applied is gtid_current_pos.
	Applied gtid.Pos
	Binlog  gtid.Pos
	// IOPos is the raw received position of a replica ("" otherwise).
	IOPos string
}

// Read reads an instance's positions, bounded by the step timeout.
func (o *Ops) Read(ctx context.Context, addr string) (Position, error) {
	ctx, cancel := context.WithTimeout(ctx, o.step)
	defer cancel()
	db := o.db(addr)
	g, err := mysqld.ReadGTIDState(ctx, db)
	if err != nil {
		return Position{}, err
	}
	rs, err := mysqld.ReadReplicaStatus(ctx, db)
	if err != nil {
		return Position{}, err
	}
	p := Position{ReadOnly: g.ReadOnly, IOPos: rs.GTIDIOPos}
	if p.Applied, err = gtid.ParsePos(g.CurrentPos); err != nil {
		return Position{}, err
	}
	if p.Binlog, err = gtid.ParsePos(g.BinlogPos); err != nil {
		return Position{}, err
	}
	p.Received = p.Binlog
	if rs.Configured && rs.GTIDIOPos != "" {
		io, err := gtid.ParsePos(rs.GTIDIOPos)
		if err != nil {
			return Position{}, err
		}
		p.Received = merge(io, p.Applied)
	}
	return p, nil
}

// merge returns the per-domain maximum of a and b.
func merge(a, b gtid.Pos) gtid.Pos {
	out := append(gtid.Pos{}, a...)
	for _, g := range b {
		found := false
		for i := range out {
			if out[i].Domain == g.Domain {
				found = true
				if g.Seq > out[i].Seq {
					out[i] = g
				}
			}
		}
		if !found {
			out = append(out, g)
		}
	}
	return out
}

// Fence stops an instance from acknowledging application writes: it kills
// client connections (their clients see an error, never an OK), sets
// read_only=1 — which waits while a commit waits for a semi-sync ack, so the
// kills repeat until it returns — kills again, and turns master-side
// semi-sync off (a demoted instance that keeps it blocks its own SQL
// thread). The agent's own account is spared.
func (o *Ops) Fence(ctx context.Context, addr string) error {
	db := o.db(addr)
	if _, err := mysqld.KillConnections(ctx, db, o.creds.User); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFenceIncomplete, addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- mysqld.SetReadOnly(ctx, db, true) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%w: %s: read_only: %w", ErrFenceIncomplete, addr, err)
			}
			waiting = false
		case <-tick.C:
			_, _ = mysqld.KillConnections(ctx, db, o.creds.User)
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", ErrFenceIncomplete, addr, ctx.Err())
		}
	}
	if _, err := mysqld.KillConnections(ctx, db, o.creds.User); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFenceIncomplete, addr, err)
	}
	if err := mysqld.DisableSemiSyncMaster(ctx, db); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFenceIncomplete, addr, err)
	}
	return nil
}

// WaitApplied waits until the instance applied pos (its relay log), at
// most timeout.
func (o *Ops) WaitApplied(ctx context.Context, addr string, pos gtid.Pos, timeout time.Duration) error {
	if len(pos) == 0 {
		return nil
	}
	return mysqld.WaitForGTID(ctx, o.db(addr), pos.String(), timeout)
}

// StopReplication stops both replication threads, bounded by 2.5 step
// timeouts: STOP SLAVE waits for an IO thread that is reconnecting to a
// paused master, about 1 s as set by ChangeMaster (slave_net_timeout and
// rpl_semi_sync_slave_kill_conn_timeout).
func (o *Ops) StopReplication(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, o.step*5/2)
	defer cancel()
	return mysqld.StopSlave(ctx, o.db(addr))
}

// MakeMaster turns a stopped replica (or a fenced master) into the
// writable master: replication forgotten, lossless semi-sync on, then
// read_only=0.
func (o *Ops) MakeMaster(ctx context.Context, addr string) error {
	db := o.db(addr)
	if err := o.StopReplication(ctx, addr); err != nil {
		return err
	}
	if err := mysqld.ResetSlaveAll(ctx, db); err != nil {
		return err
	}
	if err := mysqld.EnableSemiSyncMaster(ctx, db, o.semiSync); err != nil {
		return err
	}
	return mysqld.SetReadOnly(ctx, db, false)
}

// Replicate makes an instance a read-only replica of master with the given
// GTID mode: slave_pos for replicas, current_pos for an old master whose
// own binlog is its position.
func (o *Ops) Replicate(ctx context.Context, addr, master string, mode mysqld.GTIDMode) error {
	host, port, err := mysqld.SplitAddr(master)
	if err != nil {
		return err
	}
	db := o.db(addr)
	if err := mysqld.SetReadOnly(ctx, db, true); err != nil {
		return err
	}
	if err := mysqld.DisableSemiSyncMaster(ctx, db); err != nil {
		return err
	}
	if err := o.StopReplication(ctx, addr); err != nil {
		return err
	}
	if err := mysqld.EnableSemiSyncReplica(ctx, db); err != nil {
		return err
	}
	if err := mysqld.ChangeMaster(ctx, db, host, port, o.creds.ReplUser, o.creds.ReplPassword, mode); err != nil {
		return err
	}
	return mysqld.StartSlave(ctx, db)
}

// StartReplication starts stopped replication threads.
func (o *Ops) StartReplication(ctx context.Context, addr string) error {
	return mysqld.StartSlave(ctx, o.db(addr))
}

// Quarantine takes an instance with errant transactions out of service:
// replication stopped, read-only, master-side semi-sync off. Bringing it
// back needs an operator (re-clone or flashback).
func (o *Ops) Quarantine(ctx context.Context, addr string) error {
	if err := o.Fence(ctx, addr); err != nil {
		return err
	}
	return o.StopReplication(ctx, addr)
}
