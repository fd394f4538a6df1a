// Package lab runs drplane's local multi-DC lab on real parts: MariaDB
// clusters per DC, one etcd member and one NATS JetStream server per DC (in
// the drlab process), and every DC's services as separate OS processes.
package lab

import (
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/topology"
)

// Config describes a lab. The zero file gives the standard lab: 2 cities,
// 3 DCs (city-a: dc-a1, dc-a2; city-b: dc-b1), a master and 2 replicas each.
type Config struct {
	Cities []topology.City `yaml:"cities"`
	DCs    []DCConfig      `yaml:"dcs"`
	// Replicas per DC cluster.
	Replicas int `yaml:"replicas"`
	// Cluster is the MySQL cluster name used in every DC.
	Cluster string `yaml:"cluster"`
	// Shards of the sample keyspace.
	Shards int `yaml:"shards"`
	// PollInterval of the HA agents.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Agents is the number of HA agent processes per DC (one is active).
	Agents int `yaml:"agents"`
	// SemiSyncTimeout of every master.
	SemiSyncTimeout time.Duration `yaml:"semi_sync_timeout"`
	// AgentTTL and AgentFenceBefore are the HA agents' election.ttl and
	// election.fence_before. The lab's etcd runs inside drlab, which
	// shares the machine's cores with every lab process (and, during a
	// drill, with its writers and checks): on a loaded 2-core machine an
	// agent's renewal or probe there was seen to take over the 1 s a
	// 5 s/2 s election leaves to decide (up to 22 self-fences of the
	// masters in one drill at load 100, each a read-only master, a refused
	// or interrupted switchover). The lab defaults to 10 s/4 s: 6 s
	// without a renewal before the agent probes, 2 s for the probe. A
	// crashed active agent is then replaced after about 10 s.
	AgentTTL         time.Duration `yaml:"agent_ttl"`
	AgentFenceBefore time.Duration `yaml:"agent_fence_before"`
	// ReadyTimeout bounds the whole start.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// NATSSync is how the lab's NATS servers flush JetStream: "always"
	// (before each acknowledgement, so an acknowledged message survives an
	// OS crash) or an interval (an OS crash can lose the acknowledged
	// messages of the last interval).
	NATSSync string `yaml:"nats_sync"`
}

// NATSSyncAlways is Config.NATSSync's value for a flush before each
// acknowledgement.
const NATSSyncAlways = "always"

// natsSync returns NATSSync as the mesh's options: always, or the interval.
func (c *Config) natsSync() (always bool, interval time.Duration, err error) {
	if c.NATSSync == NATSSyncAlways {
		return true, 0, nil
	}
	d, err := time.ParseDuration(c.NATSSync)
	if err != nil || d < 10*time.Millisecond || d > 2*time.Minute {
		return false, 0, config.Invalid("nats_sync", "%q is neither %q nor an interval of 10ms-2m", c.NATSSync, NATSSyncAlways)
	}
	return false, d, nil
}

// DCConfig is one DC of the lab.
type DCConfig struct {
	Name string `yaml:"name"`
	City string `yaml:"city"`
	// MySQLPorts fixes the instances' ports (master first); empty picks free ports.
	MySQLPorts []int `yaml:"mysql_ports,omitempty"`
}

// DefaultConfig is the standard lab.
func DefaultConfig() Config {
	return Config{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs: []DCConfig{
			{Name: "dc-a1", City: "city-a"}, {Name: "dc-a2", City: "city-a"}, {Name: "dc-b1", City: "city-b"},
		},
		Replicas: 2, Cluster: "main", Shards: 64,
		PollInterval: 200 * time.Millisecond, Agents: 2, SemiSyncTimeout: 30 * time.Second, ReadyTimeout: 90 * time.Second,
		AgentTTL: 10 * time.Second, AgentFenceBefore: 4 * time.Second, NATSSync: NATSSyncAlways,
	}
}

// LoadConfig reads a lab YAML file over the defaults (empty path: defaults).
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, config.Invalid("", "read %s: %v", path, err)
		}
		// A file that lists DCs replaces the default DCs and cities.
		var probe struct {
			DCs []DCConfig `yaml:"dcs"`
		}
		if err := yaml.Unmarshal(data, &probe); err == nil && len(probe.DCs) > 0 {
			cfg.DCs, cfg.Cities = nil, nil
		}
		if err := config.Load(&cfg, config.Source{File: path}); err != nil {
			return cfg, err
		}
		return cfg, nil
	}
	return cfg, cfg.Validate()
}

// Validate checks the lab description, naming the field.
func (c *Config) Validate() error {
	if c.Replicas < 0 || c.Replicas > 4 {
		return config.Invalid("replicas", "%d out of range 0-4", c.Replicas)
	}
	if c.Shards < 1 {
		return config.Invalid("shards", "must be positive")
	}
	if c.Agents < 1 || c.Agents > 5 {
		return config.Invalid("agents", "%d out of range 1-5", c.Agents)
	}
	if c.PollInterval < 50*time.Millisecond {
		return config.Invalid("poll_interval", "%s is below 50ms", c.PollInterval)
	}
	if c.AgentTTL < 2*time.Second {
		return config.Invalid("agent_ttl", "%s is below 2s", c.AgentTTL)
	}
	if c.AgentFenceBefore <= 0 || c.AgentFenceBefore >= c.AgentTTL {
		return config.Invalid("agent_fence_before", "%s must be between 0 and agent_ttl (%s)", c.AgentFenceBefore, c.AgentTTL)
	}
	if c.SemiSyncTimeout < c.AgentTTL+time.Second {
		return config.Invalid("semi_sync_timeout", "%s must exceed agent_ttl (%s) by at least 1s: an agent without etcd quorum fences its masters within the difference",
			c.SemiSyncTimeout, c.AgentTTL)
	}
	if _, _, err := c.natsSync(); err != nil {
		return err
	}
	for i, dc := range c.DCs {
		if n := len(dc.MySQLPorts); n != 0 && n != c.Replicas+1 {
			return config.Invalid(fmt.Sprintf("dcs[%d].mysql_ports", i), "lists %d ports, want %d (master + replicas)", n, c.Replicas+1)
		}
	}
	// The planned topology (with placeholder ports where none are fixed)
	// catches unknown cities, duplicate DCs and duplicate ports.
	t := c.Topology(func(dc, i int) int {
		if p := c.DCs[dc].MySQLPorts; len(p) > 0 {
			return p[i]
		}
		return 40000 + dc*10 + i
	})
	if err := t.Validate(); err != nil {
		return &config.Error{Msg: err.Error()}
	}
	return nil
}

// InstanceName names instance i (0 = initial master) of a DC.
func InstanceName(dc string, i int) string { return fmt.Sprintf("%s-db%d", dc, i+1) }

// Topology builds the lab's topology; port gives instance i of DC number dc its port.
func (c *Config) Topology(port func(dc, i int) int) topology.Topology {
	t := topology.Topology{Cities: c.Cities}
	for d, dc := range c.DCs {
		t.DCs = append(t.DCs, topology.DC{Name: dc.Name, City: dc.City, State: topology.DCActive})
		cl := topology.Cluster{Name: c.Cluster, DC: dc.Name}
		for i := 0; i <= c.Replicas; i++ {
			cl.Instances = append(cl.Instances, topology.Instance{
				Name: InstanceName(dc.Name, i), Addr: fmt.Sprintf("127.0.0.1:%d", port(d, i)), Priority: 100 - i,
			})
		}
		t.Clusters = append(t.Clusters, cl)
	}
	t.Keyspaces = []topology.Keyspace{{Name: "orders", Cluster: c.Cluster, Database: "shop", Table: "orders", ShardKey: "user_id", Shards: c.Shards}}
	return t
}

// Schema is the sample keyspace's schema, created in every DC.
func Schema() []string {
	return []string{
		"CREATE DATABASE IF NOT EXISTS shop",
		`CREATE TABLE IF NOT EXISTS shop.orders (
  id BIGINT PRIMARY KEY,
  user_id BIGINT NOT NULL,
  amount_cents BIGINT NOT NULL,
  note VARCHAR(255),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
)`,
	}
}
