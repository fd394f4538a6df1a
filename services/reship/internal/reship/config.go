package reship

import (
	"hash/fnv"
	"math"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/services/reship/internal/ship"
)

// Start modes: where a reship without a checkpoint begins.
const (
	// StartCurrent begins at the master's current binlog position: only
	// transactions committed from then on are shipped.
	StartCurrent = "current"
	// StartEarliest begins at the start of the master's oldest binlog.
	StartEarliest = "earliest"
)

// Config is reship's configuration.
type Config struct {
	bus.ServiceConfig `yaml:",inline"`
	// Start is where a first start without a checkpoint begins: current or
	// earliest.
	Start string `yaml:"start"`
	// Window is the maximum number of publishes awaiting their PubAck.
	Window int `yaml:"window"`
	// CheckpointInterval is the minimum time between checkpoint writes.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// ServerID is the server_id of the binlog dump connection; 0 derives
	// one from the DC and cluster names (see DefaultServerID).
	ServerID int64 `yaml:"server_id"`
	// PublishTimeout is how long a PubAck may take before the publish
	// counts as failed.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// LedgerBuffer is the number of ledger updates that may wait; beyond
	// it updates are dropped (and counted), never events.
	LedgerBuffer int      `yaml:"ledger_buffer"`
	Outbound     Outbound `yaml:"outbound"`
	// NATSMonitorURL is the DC's NATS server's HTTP monitoring endpoint
	// (http://host:8222), from which reship reads the server's JetStream
	// sync setting for the durability check of drctl status; empty: the
	// setting is reported as not known.
	NATSMonitorURL string `yaml:"nats_monitor_url"`
}

// Outbound limits the DC's outbound stream OUT_<dc>.
type Outbound struct {
	// MaxAge and MaxBytes bound what the stream keeps (0: no limit).
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// Duplicates is the Nats-Msg-Id dedup window (0: the server's 2 min).
	Duplicates time.Duration `yaml:"duplicates"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		ServiceConfig:      bus.DefaultServiceConfig(),
		Start:              StartCurrent,
		Window:             ship.DefaultWindow,
		CheckpointInterval: ship.DefaultCheckpointInterval,
		PublishTimeout:     5 * time.Second,
		LedgerBuffer:       ship.DefaultLedgerBuffer,
	}
}

// Validate checks the configuration, naming the field.
func (c *Config) Validate() error {
	if err := c.ServiceConfig.Validate(); err != nil {
		return err
	}
	switch {
	case c.Start != StartCurrent && c.Start != StartEarliest:
		return config.Invalid("start", "%q is neither %q nor %q", c.Start, StartCurrent, StartEarliest)
	case c.Window < 1 || c.Window > 65536:
		return config.Invalid("window", "%d out of range 1-65536", c.Window)
	case c.CheckpointInterval < 10*time.Millisecond || c.CheckpointInterval > time.Minute:
		return config.Invalid("checkpoint_interval", "%s out of range 10ms-1m", c.CheckpointInterval)
	case c.ServerID < 0 || c.ServerID > math.MaxUint32:
		return config.Invalid("server_id", "%d out of range 0-%d", c.ServerID, uint32(math.MaxUint32))
	case c.PublishTimeout < 100*time.Millisecond:
		return config.Invalid("publish_timeout", "must be at least 100ms, got %s", c.PublishTimeout)
	case c.LedgerBuffer < 1:
		return config.Invalid("ledger_buffer", "must be at least 1")
	case c.Outbound.MaxAge < 0:
		return config.Invalid("outbound.max_age", "must be >= 0")
	case c.Outbound.MaxBytes < 0:
		return config.Invalid("outbound.max_bytes", "must be >= 0")
	case c.Outbound.Duplicates < 0:
		return config.Invalid("outbound.duplicates", "must be >= 0")
	}
	if c.NATSMonitorURL != "" {
		if u, err := url.Parse(c.NATSMonitorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Invalid("nats_monitor_url", "want http://host:port or https://host:port")
		}
	}
	return nil
}

// Flags binds reship's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	c.ServiceConfig.Flags(fs, "MySQL cluster whose master is captured")
	fs.StringVar(&c.MySQL.User, "mysql-user", c.MySQL.User, "MySQL account with REPLICATION SLAVE and SLAVE MONITOR that reads the binlog and the replicas' positions")
	fs.StringVar(&c.Start, "start", c.Start, "where a first start without checkpoint begins: current or earliest")
	fs.IntVar(&c.Window, "window", c.Window, "maximum publishes awaiting their PubAck")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", c.CheckpointInterval, "minimum time between checkpoint writes")
	fs.Int64Var(&c.ServerID, "server-id", c.ServerID, "server_id of the binlog dump connection (0: derived from DC and cluster)")
}

// EffectiveServerID is ServerID, or DefaultServerID when it is 0.
func (c *Config) EffectiveServerID() uint32 {
	if c.ServerID != 0 {
		return uint32(c.ServerID)
	}
	return DefaultServerID(c.DC, c.MySQL.Cluster)
}

// DefaultServerID derives a dump server_id from the DC and cluster names:
// 2^31 plus 30 bits of their FNV-1a hash, far above the small ids MySQL
// instances usually get, and stable across restarts.
func DefaultServerID(dc, cluster string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("reship/" + dc + "/" + cluster))
	return 1<<31 | h.Sum32()&(1<<30-1)
}
