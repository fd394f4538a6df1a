// Package agent is the HA agent service: its configuration and the wiring
// of its parts — the elector (one active agent per DC, fenced by the
// election revision), the observer, the failure analysis and the recovery
// runner, driven by the supervisor while this agent leads.
package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/decide"
	"github.com/drplane/drplane/services/haagent/internal/elect"
	"github.com/drplane/drplane/services/haagent/internal/failover"
	"github.com/drplane/drplane/services/haagent/internal/observe"
	"github.com/drplane/drplane/services/haagent/internal/repair"
	"github.com/drplane/drplane/services/haagent/internal/supervise"
)

// Config is the agent's configuration.
type Config struct {
	daemon.Common `yaml:",inline"`
	MySQL         MySQL `yaml:"mysql"`
	// PollInterval is the time between polls of every instance.
	PollInterval time.Duration `yaml:"poll_interval"`
	// SemiSyncTimeout is rpl_semi_sync_master_timeout set on a promoted
	// master. It must exceed the longest pause a deposed master could
	// survive unnoticed plus the time to fence it: past it, a master cut
	// off from its replicas acknowledges writes asynchronously.
	SemiSyncTimeout time.Duration `yaml:"semi_sync_timeout"`
	// MaxLag: replicas lagging more are not promoted.
	MaxLag time.Duration `yaml:"max_lag"`
	// FailoverBudget holds back the automatic failovers of a flapping
	// cluster (docs/adr/0006-failover-budget.md).
	FailoverBudget FailoverBudget `yaml:"failover_budget"`
	// LossyWait bounds how long a failover is held when its best candidate
	// lacks transactions the master was last seen with and a replica that
	// may hold them does not answer (0: not held; the loss is recorded).
	LossyWait time.Duration `yaml:"lossy_wait"`
	// ApplyTimeout bounds the wait for a candidate to apply its relay log
	// (failover) or to catch up with the old master (switchover).
	ApplyTimeout time.Duration  `yaml:"apply_timeout"`
	Election     Election       `yaml:"election"`
	Hooks        failover.Hooks `yaml:"hooks"`
	// Repair configures the automatic repair of deposed masters.
	Repair Repair `yaml:"repair"`
}

// Repair configures how a deposed master that returns with errant
// transactions is brought back (package repair; docs/operations.md).
type Repair struct {
	// Mode "auto" saves and undoes its never-acknowledged transactions and
	// rejoins it when that is proven safe, and quarantines it otherwise;
	// "off" always quarantines it. A deposed master with nothing errant is
	// rejoined in both.
	Mode string `yaml:"mode"`
	// Dir receives the row images of the discarded transactions, one file
	// per repair, on the active agent's host.
	Dir string `yaml:"dir"`
	// MariaDBBinlog and MariaDB are the mariadb-binlog and mariadb client
	// programs (default: found on PATH).
	MariaDBBinlog string `yaml:"mariadb_binlog"`
	MariaDB       string `yaml:"mariadb"`
	// Timeout bounds one repair.
	Timeout time.Duration `yaml:"timeout"`
}

// FailoverBudget is the anti-flap budget: a dead master is failed over
// again once the cluster has been healthy for Settle since its master last
// changed; a failover is held when the master promoted last failed before
// that, or when MaxFailovers automatic failovers already happened within
// Window. A hold lapses at its end, or when an operator releases it.
type FailoverBudget struct {
	Settle       time.Duration `yaml:"settle"`
	Window       time.Duration `yaml:"window"`
	MaxFailovers int           `yaml:"max_failovers"`
}

// Election configures the active-agent election.
type Election struct {
	// TTL of the agent's election lease: a crashed active agent is
	// replaced after about this long.
	TTL time.Duration `yaml:"ttl"`
	// FenceBefore: an active agent that cannot renew its lease fences its
	// masters when this much of the TTL is left.
	FenceBefore time.Duration `yaml:"fence_before"`
	// SinglePointLimit: an active agent whose etcd answers "no leader"
	// keeps its masters writable (single-point primary) for at most this
	// long after its last renewal, unless a majority of the etcd members
	// answer without a leader; then it fences them. Plus the TTL it must
	// stay below semi_sync_timeout: a master cut off from its replicas is
	// fenced before it acknowledges asynchronously.
	SinglePointLimit time.Duration `yaml:"single_point_limit"`
}

// MySQL holds the accounts the agent uses. User needs SUPER (or READ_ONLY
// ADMIN), REPLICATION SLAVE ADMIN, CONNECTION ADMIN and PROCESS; ReplUser
// is the account replicas connect to their master with.
type MySQL struct {
	User         string        `yaml:"user"`
	Password     config.Secret `yaml:"password"`
	ReplUser     string        `yaml:"repl_user"`
	ReplPassword config.Secret `yaml:"repl_password"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Common: daemon.DefaultCommon(), PollInterval: 200 * time.Millisecond,
		MySQL:           MySQL{ReplUser: "repl"},
		SemiSyncTimeout: 30 * time.Second, MaxLag: 10 * time.Second,
		FailoverBudget: FailoverBudget{Settle: 5 * time.Second, Window: 10 * time.Minute, MaxFailovers: 10},
		LossyWait:      10 * time.Second,
		ApplyTimeout:   5 * time.Second, Election: Election{TTL: 5 * time.Second, FenceBefore: 2 * time.Second, SinglePointLimit: 10 * time.Second},
		Hooks:  failover.Hooks{Timeout: 10 * time.Second},
		Repair: Repair{Mode: string(repair.ModeAuto), Dir: "/var/lib/drplane/haagent/repairs", Timeout: 30 * time.Second},
	}
}

// Validate checks the configuration, naming the field.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	switch {
	case c.MySQL.User == "":
		return config.Invalid("mysql.user", "required")
	case c.MySQL.ReplUser == "":
		return config.Invalid("mysql.repl_user", "required")
	case c.PollInterval < 50*time.Millisecond || c.PollInterval > time.Minute:
		return config.Invalid("poll_interval", "%s out of range 50ms-1m", c.PollInterval)
	case c.SemiSyncTimeout < time.Second:
		return config.Invalid("semi_sync_timeout", "must be at least 1s, got %s", c.SemiSyncTimeout)
	case c.MaxLag <= 0:
		return config.Invalid("max_lag", "must be > 0")
	case c.FailoverBudget.Settle < 0:
		return config.Invalid("failover_budget.settle", "must be >= 0")
	case c.FailoverBudget.Window < c.FailoverBudget.Settle:
		return config.Invalid("failover_budget.window", "must be at least failover_budget.settle (%s), got %s",
			c.FailoverBudget.Settle, c.FailoverBudget.Window)
	case c.FailoverBudget.MaxFailovers < 0:
		return config.Invalid("failover_budget.max_failovers", "must be >= 0 (0: no budget)")
	case c.LossyWait < 0 || c.LossyWait > 10*time.Minute:
		return config.Invalid("lossy_wait", "%s out of range 0-10m", c.LossyWait)
	case c.ApplyTimeout < 100*time.Millisecond:
		return config.Invalid("apply_timeout", "must be at least 100ms, got %s", c.ApplyTimeout)
	case c.Election.TTL < 2*time.Second:
		return config.Invalid("election.ttl", "must be at least 2s, got %s", c.Election.TTL)
	case c.Election.FenceBefore <= 0 || c.Election.FenceBefore >= c.Election.TTL:
		return config.Invalid("election.fence_before", "must be between 0 and election.ttl (%s), got %s", c.Election.TTL, c.Election.FenceBefore)
	case c.Election.SinglePointLimit <= 0 || c.Election.SinglePointLimit+c.Election.TTL > c.SemiSyncTimeout:
		return config.Invalid("election.single_point_limit", "must be > 0 and at most semi_sync_timeout (%s) less election.ttl (%s), got %s",
			c.SemiSyncTimeout, c.Election.TTL, c.Election.SinglePointLimit)
	case c.Hooks.Timeout <= 0:
		return config.Invalid("hooks.timeout", "must be > 0")
	case c.Repair.Mode != string(repair.ModeAuto) && c.Repair.Mode != string(repair.ModeOff):
		return config.Invalid("repair.mode", "must be %q or %q, got %q", repair.ModeAuto, repair.ModeOff, c.Repair.Mode)
	case c.Repair.Mode == string(repair.ModeAuto) && c.Repair.Dir == "":
		return config.Invalid("repair.dir", "required with repair.mode %q", repair.ModeAuto)
	case c.Repair.Timeout < time.Second:
		return config.Invalid("repair.timeout", "must be at least 1s, got %s", c.Repair.Timeout)
	}
	for name, hs := range map[string][][]string{"pre_failover": c.Hooks.PreFailover, "fence": c.Hooks.Fence, "post_success": c.Hooks.PostSuccess, "post_failure": c.Hooks.PostFailure} {
		for i, h := range hs {
			if len(h) == 0 || h[0] == "" {
				return config.Invalid("hooks."+name, "command %d is empty", i)
			}
		}
	}
	return nil
}

// Flags binds the agent's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.MySQL.User, "mysql-user", c.MySQL.User, "MySQL account used to observe, fence and promote instances")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "time between polls of every instance")
	fs.DurationVar(&c.FailoverBudget.Settle, "failover-settle", c.FailoverBudget.Settle,
		"a dead master is failed over again once its cluster has been healthy this long since the last master change")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "haagent",
		Short: "per-DC MySQL HA agent",
		Long: `haagent keeps exactly one writable MySQL master per (dc, cluster).

Run two or more per DC: they elect one active agent through etcd, and the
election revision fences every master-record write. The active agent polls
every instance, runs the failure analysis (see docs/failure-modes.md) and
carries out the recoveries: automatic failover of a dead master to the most
advanced eligible replica, fencing of deposed or extra writable masters,
repointing and rejoining replicas, repairing a deposed master that returns
with never-acknowledged transactions (saved to repair.dir, undone, rejoined)
or quarantining it when that cannot be proven safe, and the switchovers operators request with 'drctl switchover'.
An active agent that cannot renew its etcd lease fences its masters before
the lease expires; without etcd quorum nothing is promoted and the masters
keep serving.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: true,
		Run:              func(ctx context.Context, env *daemon.Env) error { return run(ctx, cfg, env) },
	}
}

func run(ctx context.Context, cfg *Config, env *daemon.Env) error {
	a, err := New(cfg, Parts{Store: env.State, Lease: env.Lease, Logger: env.Logger, Registry: env.Registry})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Parts are what an Agent runs on: the etcd store, the process lease its
// observations are published on, a logger and a metrics registry.
type Parts struct {
	Store    *state.Store
	Lease    func() clientv3.LeaseID
	Logger   zerolog.Logger
	Registry prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent is one HA agent: it campaigns, and supervises the DC while it leads.
type Agent struct {
	ops        *failover.Ops
	repair     *repair.Repairer
	elector    *elect.Elector
	supervisor *supervise.Supervisor
	// lease keeps the DC lease while this agent leads.
	lease func(elect.Leadership) error
}

// New wires an agent from its configuration.
func New(cfg *Config, p Parts) (*Agent, error) {
	ob := observe.New(observe.Options{
		DC: cfg.DC, ID: cfg.ID, User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(),
		Interval: cfg.PollInterval, Republish: 5 * time.Second, Store: p.Store, Lease: p.Lease,
		Logger: p.Logger, Registry: p.Registry, Now: p.Now,
	})
	ops := failover.NewOps(failover.Creds{
		User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(),
		ReplUser: cfg.MySQL.ReplUser, ReplPassword: cfg.MySQL.ReplPassword.Reveal(),
	}, cfg.SemiSyncTimeout, 2*time.Second)
	outbox := audit.NewOutbox(p.Store)
	hooks := cfg.Hooks
	hooks.Secrets = []string{cfg.MySQL.Password.Reveal(), cfg.MySQL.ReplPassword.Reveal(), cfg.Etcd.Password.Reveal()}
	runner := failover.NewRunner(failover.Options{
		DC: cfg.DC, AgentID: cfg.ID, Ops: ops, Store: p.Store, Audit: outbox, Hooks: hooks,
		ApplyTimeout: cfg.ApplyTimeout, Metrics: failover.NewMetrics(p.Registry), Logger: p.Logger, Now: p.Now,
	})
	rep := repair.New(repair.Options{
		DC: cfg.DC, AgentID: cfg.ID, Mode: repair.Mode(cfg.Repair.Mode), Dir: cfg.Repair.Dir,
		Binlog: cfg.Repair.MariaDBBinlog, Client: cfg.Repair.MariaDB,
		User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(), Ops: ops, Store: p.Store,
		Timeout: cfg.Repair.Timeout, Logger: p.Logger, Registry: p.Registry, Now: p.Now,
	})
	sup := supervise.New(supervise.Options{
		DC: cfg.DC, ID: cfg.ID, Store: p.Store, Observer: ob, Runner: runner, Audit: outbox, Repair: rep,
		Interval: cfg.PollInterval, MaxLag: cfg.MaxLag,
		Policy: decide.Policy{Settle: cfg.FailoverBudget.Settle, Window: cfg.FailoverBudget.Window,
			MaxFailovers: cfg.FailoverBudget.MaxFailovers, LossyWait: cfg.LossyWait},
		Logger: p.Logger, Registry: p.Registry, Now: p.Now,
	})
	el, err := elect.New(elect.Options{
		Client: p.Store.Client(), Store: p.Store, DC: cfg.DC, ID: cfg.ID,
		TTL: cfg.Election.TTL, FenceBefore: cfg.Election.FenceBefore, SinglePointLimit: cfg.Election.SinglePointLimit,
		SelfFence: sup.SelfFence,
		Logger:    p.Logger, Registry: p.Registry, Now: p.Now,
	})
	if err != nil {
		ops.Close()
		rep.Close()
		return nil, err
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	lease := func(l elect.Leadership) error {
		return keepDCLease(l, p.Store, cfg.DC, cfg.ID, cfg.Election.TTL, now, p.Logger)
	}
	return &Agent{ops: ops, repair: rep, elector: el, supervisor: sup, lease: lease}, nil
}

// Run campaigns, and while it leads supervises the DC and keeps its DC
// lease, until ctx ends. It follows the DC's topology throughout and
// campaigns only once it has read it, so that it can fence the DC's
// instances even when it loses etcd before its first cycle.
func (a *Agent) Run(ctx context.Context) error {
	defer a.ops.Close()
	defer a.repair.Close()
	fctx, stopFollowing := context.WithCancel(ctx)
	known, followed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(followed)
		a.supervisor.FollowTopology(fctx, known)
	}()
	defer func() {
		stopFollowing()
		<-followed
	}()
	select {
	case <-known:
	case <-ctx.Done():
		return nil
	}
	return a.elector.Run(ctx, func(l elect.Leadership) error {
		lctx, cancel := context.WithCancel(l.Ctx)
		ll := l
		ll.Ctx = lctx
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = a.lease(ll)
		}()
		err := a.supervisor.Lead(l)
		cancel()
		<-done
		return err
	})
}

// Elector returns the agent's elector (leadership state).
func (a *Agent) Elector() *elect.Elector { return a.elector }
