package mysqld

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// ErrBootstrap means a cluster could not be set up or did not converge.
var ErrBootstrap = errors.New("mysqld: cluster bootstrap failed")

const (
	// DefaultSemiSyncTimeout is how long a master waits for a replica's ack
	// before it falls back to async.
	DefaultSemiSyncTimeout = 10 * time.Second
	// DefaultConvergeTimeout bounds the waits of Bootstrap and
	// Cluster.WaitReplicas when ctx has no deadline.
	DefaultConvergeTimeout = 60 * time.Second
	// DefaultReplUser is the replication account created by Bootstrap.
	DefaultReplUser = "repl"
	// DefaultAdminUser is the agent's account created by Bootstrap.
	DefaultAdminUser = "drplane"
	pollInterval     = 25 * time.Millisecond
)

// BootstrapOptions describe a cluster to set up.
type BootstrapOptions struct {
	// Master and Replicas must be started and fresh (or already replicating
	// from Master).
	Master   *Instance
	Replicas []*Instance
	// Users are created on the master; empty names default to
	// DefaultReplUser and DefaultAdminUser, empty passwords are generated.
	Users Users
	// SemiSyncTimeout is rpl_semi_sync_master_timeout on the master;
	// default DefaultSemiSyncTimeout.
	SemiSyncTimeout time.Duration
	// Logger receives progress.
	Logger zerolog.Logger
}

// Cluster is a master with GTID semi-sync replicas.
type Cluster struct {
	Master          *Instance
	Replicas        []*Instance
	Users           Users
	SemiSyncTimeout time.Duration
}

// Bootstrap creates the accounts on the master, attaches every replica with
// GTID replication (slave_pos) as a semi-sync replica, then enables lossless
// semi-sync (AFTER_SYNC) on the master, makes the master writable (the
// replicas stay read_only) and waits until every replica runs both threads,
// acks, and applied everything the master has. It is bounded by ctx, or by
// DefaultConvergeTimeout when ctx has no deadline.
func Bootstrap(ctx context.Context, opts BootstrapOptions) (*Cluster, error) {
	if opts.Master == nil {
		return nil, fmt.Errorf("%w: no master", ErrInvalidOptions)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConvergeTimeout)
		defer cancel()
	}
	users, err := defaultUsers(opts.Users)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Master:          opts.Master,
		Replicas:        opts.Replicas,
		Users:           users,
		SemiSyncTimeout: opts.SemiSyncTimeout,
	}
	if c.SemiSyncTimeout <= 0 {
		c.SemiSyncTimeout = DefaultSemiSyncTimeout
	}
	log := opts.Logger.With().Str("master", c.Master.Name()).Logger()
	started := time.Now()

	master, err := c.Master.Admin(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	if err := CreateUsers(ctx, master, users); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	for _, r := range c.Replicas {
		if err := c.attach(ctx, r); err != nil {
			return nil, fmt.Errorf("%w: attach %s: %w", ErrBootstrap, r.Name(), err)
		}
	}
	if err := c.waitThreads(ctx); err != nil {
		return nil, err
	}
	if err := EnableSemiSyncMaster(ctx, master, c.SemiSyncTimeout); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	if err := c.waitSemiSyncClients(ctx); err != nil {
		return nil, err
	}
	if err := SetReadOnly(ctx, master, false); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	// The threads were seen running above: only the applying is left.
	if err := c.waitApplied(ctx); err != nil {
		return nil, err
	}
	log.Info().Int("replicas", len(c.Replicas)).Dur("took", time.Since(started)).Msg("cluster bootstrapped")
	return c, nil
}

// attach makes r a semi-sync replica of the master and starts replication.
func (c *Cluster) attach(ctx context.Context, r *Instance) error {
	db, err := r.Admin(ctx)
	if err != nil {
		return err
	}
	if err := EnableSemiSyncReplica(ctx, db); err != nil {
		return err
	}
	err = ChangeMaster(ctx, db, c.Master.Host(), c.Master.Port(), c.Users.ReplUser, c.Users.ReplPassword, SlavePos)
	if err != nil {
		return err
	}
	return StartSlave(ctx, db)
}

func defaultUsers(u Users) (Users, error) {
	if u.ReplUser == "" {
		u.ReplUser = DefaultReplUser
	}
	if u.AdminUser == "" {
		u.AdminUser = DefaultAdminUser
	}
	var err1, err2 error
	if u.ReplPassword == "" {
		u.ReplPassword, err1 = RandomPassword()
	}
	if u.AdminPassword == "" {
		u.AdminPassword, err2 = RandomPassword()
	}
	return u, errors.Join(err1, err2)
}

// WaitReplicas waits until every replica runs both replication threads and
// has applied the master's current gtid_binlog_pos. It is bounded by ctx, or
// by DefaultConvergeTimeout when ctx has no deadline.
func (c *Cluster) WaitReplicas(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConvergeTimeout)
		defer cancel()
	}
	if err := c.waitThreads(ctx); err != nil {
		return err
	}
	return c.waitApplied(ctx)
}

// waitApplied waits until every replica has applied the master's current
// gtid_binlog_pos.
func (c *Cluster) waitApplied(ctx context.Context) error {
	master, err := c.Master.Admin(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	st, err := ReadGTIDState(ctx, master)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	if st.BinlogPos == "" {
		return nil
	}
	for _, r := range c.Replicas {
		db, err := r.Admin(ctx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBootstrap, err)
		}
		if err := WaitForGTID(ctx, db, st.BinlogPos, remaining(ctx)); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBootstrap, r.Name(), err)
		}
	}
	return nil
}

// waitThreads polls until every replica's IO and SQL threads run.
func (c *Cluster) waitThreads(ctx context.Context) error {
	for _, r := range c.Replicas {
		db, err := r.Admin(ctx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBootstrap, err)
		}
		var last ReplicaStatus
		err = poll(ctx, func() (bool, error) {
			st, err := ReadReplicaStatus(ctx, db)
			last = st
			return st.Healthy(), err
		})
		if err != nil {
			return fmt.Errorf("%w: %s replication threads (io=%q sql=%v io_error=%d %q sql_error=%d %q): %w",
				ErrBootstrap, r.Name(), last.IOState, last.SQLRunning, last.LastIOErrno, last.LastIOError,
				last.LastSQLErrno, last.LastSQLError, err)
		}
	}
	return nil
}

// waitSemiSyncClients polls until the master counts every replica as a
// semi-sync client.
func (c *Cluster) waitSemiSyncClients(ctx context.Context) error {
	db, err := c.Master.Admin(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	var last GTIDState
	err = poll(ctx, func() (bool, error) {
		st, err := ReadGTIDState(ctx, db)
		last = st
		return st.SemiSyncMasterActive && st.SemiSyncMasterClients >= len(c.Replicas), err
	})
	if err != nil {
		return fmt.Errorf("%w: semi-sync clients %d of %d (active=%v): %w",
			ErrBootstrap, last.SemiSyncMasterClients, len(c.Replicas), last.SemiSyncMasterActive, err)
	}
	return nil
}

// poll calls check every pollInterval until it returns true or ctx ends.
// Errors from check are retried; the last one is returned with ctx's error.
func poll(ctx context.Context, check func() (bool, error)) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		ok, err := check()
		if ok && err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// remaining returns the time left before ctx's deadline, at least a second
// (MASTER_GTID_WAIT takes whole and fractional seconds; ctx still bounds it).
func remaining(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return DefaultConvergeTimeout
	}
	if r := time.Until(d); r > time.Second {
		return r
	}
	return time.Second
}
