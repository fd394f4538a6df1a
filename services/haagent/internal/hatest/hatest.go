// Package hatest is the HA agent's test bed on real parts: a MariaDB
// semi-sync cluster and an embedded etcd with the topology and master
// record written, an application writer that follows the master record
// and remembers every acknowledged write, and a sampler that watches for
// two writable instances. Only tests import it.
package hatest

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/embedetcd"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// DC and Cluster name the test bed's only cluster.
const (
	DC      = "dc1"
	Cluster = "main"
	// Table is where the writer writes.
	Table = "acks"
)

// Options configure Start.
type Options struct {
	// Instances is the cluster size (default 3).
	Instances int
	// EtcdMembers is the etcd cluster size (default 1).
	EtcdMembers int
	// SemiSyncTimeout of the bootstrapped master (default 60s: longer than
	// any pause a test inflicts).
	SemiSyncTimeout time.Duration
	// Addr, when set, returns the address the topology (and so the agent)
	// uses for an instance, e.g. a toxiproxy in front of it.
	Addr func(name, real string) string
}

// Env is a running test bed.
type Env struct {
	T     testing.TB
	DB    *harness.MariaDBCluster
	Etcd  *embedetcd.Cluster
	Cli   *clientv3.Client
	Store *state.Store
	Topo  topology.Topology
	insts map[string]*mysqld.Instance
}

// Start brings the test bed up; everything stops when the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Instances == 0 {
		o.Instances = 3
	}
	if o.EtcdMembers == 0 {
		o.EtcdMembers = 1
	}
	if o.SemiSyncTimeout == 0 {
		o.SemiSyncTimeout = 60 * time.Second
	}
	db := harness.StartMariaDB(t, harness.MariaDBOptions{
		Instances: o.Instances, SemiSyncTimeout: o.SemiSyncTimeout,
		Schema: []string{"CREATE TABLE " + Table + " (id BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"},
	})
	ec := harness.StartEtcd(t, o.EtcdMembers)
	cli := harness.EtcdClientFor(t, ec)
	e := &Env{T: t, DB: db, Etcd: ec, Cli: cli, Store: state.New(cli, ""), insts: map[string]*mysqld.Instance{}}
	cl := topology.Cluster{Name: Cluster, DC: DC}
	for _, in := range append([]*mysqld.Instance{db.Master}, db.Replicas...) {
		e.insts[in.Name()] = in
		addr := in.Addr()
		if o.Addr != nil {
			addr = o.Addr(in.Name(), addr)
		}
		cl.Instances = append(cl.Instances, topology.Instance{Name: in.Name(), Addr: addr})
	}
	e.Topo = topology.Topology{
		Cities: []topology.City{{Name: "city1"}}, DCs: []topology.DC{{Name: DC, City: "city1"}},
		Clusters: []topology.Cluster{cl},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.Store.PutTopology(ctx, e.Topo, -1); err != nil {
		t.Fatalf("hatest: topology: %v", err)
	}
	rec := state.MasterRecord{DC: DC, Cluster: Cluster, Instance: cl.Instances[0].Name, Addr: cl.Instances[0].Addr,
		Term: 1, UpdatedAt: time.Now().UTC(), Reason: "bootstrap"}
	if _, err := e.Store.PutMaster(ctx, rec, 0, nil); err != nil {
		t.Fatalf("hatest: master record: %v", err)
	}
	return e
}

// Instance returns the named mysqld.
func (e *Env) Instance(name string) *mysqld.Instance {
	in, ok := e.insts[name]
	if !ok {
		e.T.Fatalf("hatest: no instance %q", name)
	}
	return in
}

// Instances returns every mysqld, master first as bootstrapped.
func (e *Env) Instances() []*mysqld.Instance {
	out := []*mysqld.Instance{e.DB.Master}
	return append(out, e.DB.Replicas...)
}

// TopoCluster returns the cluster as in the topology.
func (e *Env) TopoCluster() topology.Cluster { return e.Topo.Clusters[0] }

// Master returns the current master record and its revision.
func (e *Env) Master() (state.MasterRecord, int64) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, rev, err := e.Store.Master(ctx, DC, Cluster)
	if err != nil {
		e.T.Fatalf("hatest: master record: %v", err)
	}
	return rec, rev
}

// AppDB opens a pool as the app user on addr with short timeouts, closed
// when the test ends.
func (e *Env) AppDB(addr string, timeout time.Duration) *sql.DB {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = e.DB.AppUser, e.DB.AppPassword, "tcp", addr, e.DB.Database
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = timeout, timeout, timeout
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		e.T.Fatalf("hatest: %v", err)
	}
	db := sql.OpenDB(conn)
	e.T.Cleanup(func() { _ = db.Close() })
	return db
}

// MissingAcked returns the acknowledged ids absent from the instance at addr.
func (e *Env) MissingAcked(addr string, acked []int64) ([]int64, error) {
	db := e.AppDB(addr, 5*time.Second)
	rows, err := db.Query("SELECT id FROM " + Table)
	if err != nil {
		return nil, fmt.Errorf("hatest: read %s: %w", addr, err)
	}
	defer func() { _ = rows.Close() }()
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		have[id] = true
	}
	var missing []int64
	for _, id := range acked {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing, rows.Err()
}
