// Package agent is the HA agent service: configuration and wiring of its
// parts. In this release the agent observes its DC's instances and
// publishes their state; failure analysis, failover and fencing are not
// implemented yet.
package agent

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/haagent/internal/observe"
)

// Config is the agent's configuration.
type Config struct {
	daemon.Common `yaml:",inline"`
	MySQL         MySQL `yaml:"mysql"`
	// PollInterval is the time between polls of every instance.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// MySQL is the account the agent observes (and later fences and promotes)
// instances with. It needs SUPER (or READ_ONLY ADMIN), REPLICATION SLAVE ADMIN
// and PROCESS.
type MySQL struct {
	User     string        `yaml:"user"`
	Password config.Secret `yaml:"password"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{Common: daemon.DefaultCommon(), PollInterval: time.Second}
}

// Validate checks the configuration, naming the field.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.MySQL.User == "" {
		return config.Invalid("mysql.user", "required")
	}
	if c.PollInterval < 50*time.Millisecond || c.PollInterval > time.Minute {
		return config.Invalid("poll_interval", "%s out of range 50ms-1m", c.PollInterval)
	}
	return nil
}

// Flags binds the agent's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.MySQL.User, "mysql-user", c.MySQL.User, "MySQL account used to observe instances")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "time between polls of every instance")
}

// Spec is the service description handed to daemon.Main.
func Spec(cfg *Config) daemon.Spec {
	return daemon.Spec{
		Name:  "haagent",
		Short: "per-DC MySQL HA agent",
		Long: `STATUS: observation only. haagent polls every MySQL instance of its DC's
clusters (reachability, role, read_only, GTID positions, replication threads,
lag, semi-sync) and publishes the observations to etcd on its lease, where the
coordinator and 'drctl status' read them. Failure analysis, automatic failover,
fencing and switchover are NOT implemented yet: this agent never changes a
MySQL instance.`,
		Config:           cfg,
		Flags:            cfg.Flags,
		LogicImplemented: false,
		Run: func(ctx context.Context, env *daemon.Env) error {
			ob := observe.New(observe.Options{
				DC: cfg.DC, ID: cfg.ID, User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(),
				Interval: cfg.PollInterval, Republish: 5 * time.Second, Store: env.State, Lease: env.Lease,
				Logger: env.Logger, Registry: env.Registry,
			})
			env.Logger.Warn().Msg("automatic failover is not implemented yet: this agent only observes")
			return ob.Run(ctx)
		},
	}
}
