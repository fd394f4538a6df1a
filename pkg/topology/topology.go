package topology

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DCState is the administrative state of a data center.
type DCState string

// DC states. A DC that is not ACTIVE owns no shards once the workflows that
// move shards have run.
const (
	DCActive    DCState = "ACTIVE"
	DCDraining  DCState = "DRAINING"
	DCEvacuated DCState = "EVACUATED"
	DCDown      DCState = "DOWN"
)

// Valid reports whether s is a known state.
func (s DCState) Valid() bool {
	switch s {
	case DCActive, DCDraining, DCEvacuated, DCDown:
		return true
	}
	return false
}

// Topology is everything drplane knows about the physical layout.
type Topology struct {
	Cities    []City     `yaml:"cities" json:"cities"`
	DCs       []DC       `yaml:"dcs" json:"dcs"`
	Clusters  []Cluster  `yaml:"clusters" json:"clusters"`
	Keyspaces []Keyspace `yaml:"keyspaces" json:"keyspaces"`
}

// City groups DCs that share a failure domain larger than one DC.
type City struct {
	Name string `yaml:"name" json:"name"`
}

// DC is one data center.
type DC struct {
	Name  string  `yaml:"name" json:"name"`
	City  string  `yaml:"city" json:"city"`
	State DCState `yaml:"state,omitempty" json:"state,omitempty"`
}

// Cluster is one MySQL replication cluster inside one DC: one master and its
// replicas. The same cluster name usually exists in every DC (each DC holds a
// copy of the data).
type Cluster struct {
	Name      string     `yaml:"name" json:"name"`
	DC        string     `yaml:"dc" json:"dc"`
	Instances []Instance `yaml:"instances" json:"instances"`
}

// Instance is one mysqld.
type Instance struct {
	Name string `yaml:"name" json:"name"`
	// Addr is host:port of the MySQL protocol listener.
	Addr string `yaml:"addr" json:"addr"`
	// Priority orders promotion candidates: higher wins among equally advanced replicas.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// NoMaster excludes the instance from promotion.
	NoMaster bool `yaml:"no_master,omitempty" json:"no_master,omitempty"`
}

// Keyspace is a sharded data set: a table (and more tables of its
// database, Tables) sharded by one column.
type Keyspace struct {
	Name     string `yaml:"name" json:"name"`
	Cluster  string `yaml:"cluster" json:"cluster"`
	Database string `yaml:"database" json:"database"`
	Table    string `yaml:"table" json:"table"`
	// Tables are more tables of Database that belong to the keyspace:
	// each carries the ShardKey column, and its rows move with their
	// shard. Only the keyspace's tables are captured and applied.
	Tables   []string `yaml:"tables,omitempty" json:"tables,omitempty"`
	ShardKey string   `yaml:"shard_key" json:"shard_key"`
	Shards   int      `yaml:"shards" json:"shards"`
	// AutoCityFailover, when set, overrides the coordinator's
	// city_failover.auto for this keyspace: whether its shards move to
	// their backups by themselves when their owner DC is LOST.
	AutoCityFailover *bool `yaml:"auto_city_failover,omitempty" json:"auto_city_failover,omitempty"`
	// MaxRPO is the data-loss budget of an automatic city failover (a Go
	// duration such as "5s"): a shard whose estimated loss window exceeds
	// it is held for an operator. Empty: no budget.
	MaxRPO string `yaml:"max_rpo,omitempty" json:"max_rpo,omitempty"`
}

// OwnTablePrefix starts the names of drplane's own tables (dedup rows,
// row positions, barriers), which never belong to a keyspace.
const OwnTablePrefix = "drplane_"

// validTable reports whether name can be a keyspace's table: a MySQL
// identifier (1-64 characters, no NUL, no trailing space) that is not one
// of drplane's own tables in any letter case.
func validTable(name string) bool {
	own := len(name) >= len(OwnTablePrefix) && strings.EqualFold(name[:len(OwnTablePrefix)], OwnTablePrefix)
	return name != "" && len(name) <= 64 && !strings.ContainsRune(name, 0) && strings.TrimRight(name, " ") == name && !own
}

// Equal reports whether k and o describe the same keyspace, field by field
// (AutoCityFailover by value).
func (k Keyspace) Equal(o Keyspace) bool {
	sameAuto := (k.AutoCityFailover == nil) == (o.AutoCityFailover == nil) &&
		(k.AutoCityFailover == nil || *k.AutoCityFailover == *o.AutoCityFailover)
	return k.Name == o.Name && k.Cluster == o.Cluster && k.Database == o.Database && k.Table == o.Table &&
		slices.Equal(k.Tables, o.Tables) && k.ShardKey == o.ShardKey && k.Shards == o.Shards && k.MaxRPO == o.MaxRPO && sameAuto
}

// AllTables returns Table followed by Tables.
func (k Keyspace) AllTables() []string {
	return append([]string{k.Table}, k.Tables...)
}

// HasTable reports whether table is one of the keyspace's tables.
func (k Keyspace) HasTable(table string) bool {
	return table == k.Table || slices.Contains(k.Tables, table)
}

// MaxRPODuration returns MaxRPO parsed (0: no budget).
func (k Keyspace) MaxRPODuration() time.Duration {
	d, err := time.ParseDuration(k.MaxRPO)
	if err != nil || k.MaxRPO == "" {
		return 0
	}
	return d
}

// FieldError is one validation failure, naming the field by its path
// (for example "clusters[2].dc").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("topology: invalid")

// ValidationError holds every field error found in one pass.
type ValidationError struct {
	Errs []*FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		parts[i] = fe.Error()
	}
	return "invalid topology: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is(err, ErrInvalid) succeed.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

type checker struct{ errs []*FieldError }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) name(field, v string) {
	switch {
	case v == "":
		c.add(field, "must not be empty")
	case !ValidName(v):
		c.add(field, "%q may contain only letters, digits, '-' and '_'", v)
	}
}

// ValidName reports whether v is a usable name for a city, DC, cluster,
// instance or keyspace: non-empty, only letters, digits, '-' and '_' (DC
// names become JetStream domains, subject tokens and parts of stream names).
func ValidName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// Validate checks the whole topology: unique names, references to cities and
// DCs that exist, well-formed and unique instance addresses, keyspaces whose
// cluster exists in every DC.
func (t *Topology) Validate() error {
	var c checker
	cities := map[string]bool{}
	for i, city := range t.Cities {
		f := fmt.Sprintf("cities[%d].name", i)
		c.name(f, city.Name)
		if cities[city.Name] {
			c.add(f, "duplicate city %q", city.Name)
		}
		cities[city.Name] = true
	}
	if len(t.DCs) == 0 {
		c.add("dcs", "at least one DC is required")
	}
	dcs := map[string]bool{}
	for i, dc := range t.DCs {
		f := fmt.Sprintf("dcs[%d]", i)
		c.name(f+".name", dc.Name)
		if dcs[dc.Name] {
			c.add(f+".name", "duplicate DC %q", dc.Name)
		}
		dcs[dc.Name] = true
		if !cities[dc.City] {
			c.add(f+".city", "unknown city %q", dc.City)
		}
		if dc.State != "" && !dc.State.Valid() {
			c.add(f+".state", "unknown state %q (want ACTIVE, DRAINING, EVACUATED or DOWN)", dc.State)
		}
	}
	clusterDCs := map[string]map[string]bool{}
	addrs := map[string]string{}
	instances := map[string]string{}
	for i, cl := range t.Clusters {
		f := fmt.Sprintf("clusters[%d]", i)
		c.name(f+".name", cl.Name)
		if !dcs[cl.DC] {
			c.add(f+".dc", "unknown DC %q", cl.DC)
		}
		if clusterDCs[cl.Name] == nil {
			clusterDCs[cl.Name] = map[string]bool{}
		}
		if clusterDCs[cl.Name][cl.DC] {
			c.add(f+".name", "duplicate cluster %q in DC %q", cl.Name, cl.DC)
		}
		clusterDCs[cl.Name][cl.DC] = true
		if len(cl.Instances) == 0 {
			c.add(f+".instances", "at least one instance is required")
		}
		for j, in := range cl.Instances {
			fi := fmt.Sprintf("%s.instances[%d]", f, j)
			c.name(fi+".name", in.Name)
			if prev, dup := instances[in.Name]; dup {
				c.add(fi+".name", "duplicate instance name %q (also in %s)", in.Name, prev)
			}
			instances[in.Name] = fi
			host, port, err := net.SplitHostPort(in.Addr)
			if err != nil || host == "" {
				c.add(fi+".addr", "%q is not host:port", in.Addr)
				continue
			}
			if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
				c.add(fi+".addr", "port %q out of range 1-65535", port)
				continue
			}
			if prev, dup := addrs[in.Addr]; dup {
				c.add(fi+".addr", "duplicate address %s (also used by %s)", in.Addr, prev)
			}
			addrs[in.Addr] = fi
		}
	}
	keyspaces := map[string]bool{}
	for i, ks := range t.Keyspaces {
		f := fmt.Sprintf("keyspaces[%d]", i)
		c.name(f+".name", ks.Name)
		if keyspaces[ks.Name] {
			c.add(f+".name", "duplicate keyspace %q", ks.Name)
		}
		keyspaces[ks.Name] = true
		if ks.Database == "" {
			c.add(f+".database", "must not be empty")
		}
		if ks.Table == "" {
			c.add(f+".table", "must not be empty")
		} else if !validTable(ks.Table) {
			c.add(f+".table", "%q is not a usable table name", ks.Table)
		}
		for j, tb := range ks.Tables {
			switch {
			case !validTable(tb):
				c.add(fmt.Sprintf("%s.tables[%d]", f, j), "%q is not a usable table name", tb)
			case slices.Contains(ks.AllTables()[:j+1], tb):
				c.add(fmt.Sprintf("%s.tables[%d]", f, j), "table %q listed twice", tb)
			}
		}
		if ks.ShardKey == "" {
			c.add(f+".shard_key", "must not be empty")
		}
		if ks.Shards < 1 || ks.Shards > 65536 {
			c.add(f+".shards", "%d out of range 1-65536", ks.Shards)
		}
		if d, err := time.ParseDuration(ks.MaxRPO); ks.MaxRPO != "" && (err != nil || d < 0) {
			c.add(f+".max_rpo", "%q is not a duration >= 0 such as \"5s\"", ks.MaxRPO)
		}
		in := clusterDCs[ks.Cluster]
		if in == nil {
			c.add(f+".cluster", "unknown cluster %q", ks.Cluster)
			continue
		}
		for _, dc := range t.DCs {
			if !in[dc.Name] {
				c.add(f+".cluster", "cluster %q has no instances in DC %q", ks.Cluster, dc.Name)
			}
		}
	}
	if len(c.errs) == 0 {
		return nil
	}
	return &ValidationError{Errs: c.errs}
}

// DC returns the named DC.
func (t *Topology) DC(name string) (DC, bool) {
	for _, dc := range t.DCs {
		if dc.Name == name {
			return dc, true
		}
	}
	return DC{}, false
}

// ClustersIn returns the clusters of one DC, sorted by name.
func (t *Topology) ClustersIn(dc string) []Cluster {
	var out []Cluster
	for _, cl := range t.Clusters {
		if cl.DC == dc {
			out = append(out, cl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Cluster returns the named cluster of a DC.
func (t *Topology) Cluster(dc, name string) (Cluster, bool) {
	for _, cl := range t.Clusters {
		if cl.DC == dc && cl.Name == name {
			return cl, true
		}
	}
	return Cluster{}, false
}

// Keyspace returns the named keyspace.
func (t *Topology) Keyspace(name string) (Keyspace, bool) {
	for _, ks := range t.Keyspaces {
		if ks.Name == name {
			return ks, true
		}
	}
	return Keyspace{}, false
}

// StateOf returns the DC's state, ACTIVE when unset.
func (dc DC) StateOf() DCState {
	if dc.State == "" {
		return DCActive
	}
	return dc.State
}
