package repl

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/drplane/drplane/pkg/embedetcd"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// The test bed's layout: two cities, three DCs, one cluster per DC and the
// sample keyspace of architecture.md §6.
const (
	dcA1        = "dc-a1"
	dcA2        = "dc-a2"
	dcB1        = "dc-b1"
	clusterName = "main"
	keyspace    = "orders"
	database    = "shop"
	// shardCount is the keyspace's shard count unless a bed asks for
	// another (startBedWith).
	shardCount = 64
	// dedupTable is the collector's dedup table in the keyspace database.
	dedupTable = "drplane_applied"
)

// ordersDDL is the sample keyspace's table.
var ordersDDL = tableDDL("orders")

// tableDDL is the DDL of a keyspace table shaped like orders.
func tableDDL(name string) string {
	return "CREATE TABLE " + name + " (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, " +
		"note VARCHAR(255), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
}

// Deadlines of the polls.
const (
	waitConverge = 90 * time.Second
	waitReady    = 60 * time.Second
	pollEvery    = 50 * time.Millisecond
)

// dcNames lists the DCs in topology order (their GTID domain is the index
// plus one).
func dcNames() []string { return []string{dcA1, dcA2, dcB1} }

// cityOf is the city of a DC.
func cityOf(dc string) string {
	if dc == dcB1 {
		return "city-b"
	}
	return "city-a"
}

// bed is the shared infrastructure: etcd with topology, shard map and
// master records, the NATS mesh, one MariaDB cluster per DC, and the DCs'
// reship and collector processes.
type bed struct {
	t      testing.TB
	bin    string
	shards int
	etcd   *embedetcd.Cluster
	store  *state.Store
	mesh   *embednats.Mesh
	topo   topology.Topology
	table  *shardmap.Table
	dcs    map[string]*dc
	// extra are keyspaces besides orders (in the same database and
	// cluster, each with a table shaped like orders), for tests of
	// per-keyspace policy.
	extra []topology.Keyspace
	// owned lists, per DC, user ids whose shard the DC owns.
	owned map[string][]int64

	jsMu   sync.Mutex
	jsByDC map[string]jetstream.JetStream
}

// dc is one DC of the bed.
type dc struct {
	name   string
	domain int
	db     *harness.MariaDBCluster
	users  mysqld.Users

	mu     sync.Mutex
	master *mysqld.Instance
	pools  map[string]*sql.DB // app-user pools by instance name

	reship, collector *service
}

// startBed starts the infrastructure and stores the topology; the services
// are started by startServices.
func startBed(t testing.TB) *bed {
	t.Helper()
	return startBedWith(t, shardCount)
}

// startBedWith is startBed with a keyspace of shards shards and, besides
// it, the keyspaces of extra (their tables are created in every DC).
func startBedWith(t testing.TB, shards int, extra ...topology.Keyspace) *bed {
	t.Helper()
	began := time.Now()
	b := &bed{t: t, bin: bins(t), shards: shards, extra: extra, dcs: map[string]*dc{}, owned: map[string][]int64{},
		jsByDC: map[string]jetstream.JetStream{}}
	schema := []string{ordersDDL}
	for _, ks := range extra {
		schema = append(schema, tableDDL(ks.Table))
	}
	var wg sync.WaitGroup
	clusters := make([]*harness.MariaDBCluster, len(dcNames()))
	for i := range dcNames() {
		wg.Go(func() {
			clusters[i] = harness.StartMariaDB(t, harness.MariaDBOptions{
				Instances: 2, Database: database, Schema: schema,
				// One GTID domain per DC, as in the lab.
				Args: []string{"--gtid-domain-id=" + strconv.Itoa(i+1)},
			})
		})
	}
	// DRPLANE_BENCH_NATS_SYNC=always runs the servers durable on acknowledgement (docs/benchmarks.md
	// compares the two).
	wg.Go(func() {
		b.mesh = harness.StartNATSWith(t, embednats.Options{DCs: dcNames(), SyncAlways: os.Getenv("DRPLANE_BENCH_NATS_SYNC") == "always"})
	})
	b.etcd = harness.StartEtcd(t, 1)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	b.store = state.New(harness.EtcdClientFor(t, b.etcd), "")
	for i, name := range dcNames() {
		db := clusters[i]
		b.dcs[name] = &dc{name: name, domain: i + 1, db: db, users: db.Users, master: db.Master, pools: map[string]*sql.DB{}}
	}
	b.storeTopology()
	t.Logf("bed: 6 mariadbd, etcd, NATS mesh and topology up in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(b.closePools)
	return b
}

// storeTopology writes the topology, the keyspace's default shard map and
// every DC's master record, and compiles the map for routing keys.
func (b *bed) storeTopology() {
	t := b.t
	topo := topology.Topology{Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}}}
	for _, name := range dcNames() {
		d := b.dcs[name]
		topo.DCs = append(topo.DCs, topology.DC{Name: name, City: cityOf(name)})
		cl := topology.Cluster{Name: clusterName, DC: name}
		for _, in := range d.instances() {
			cl.Instances = append(cl.Instances, topology.Instance{Name: name + "-" + in.Name(), Addr: in.Addr()})
		}
		topo.Clusters = append(topo.Clusters, cl)
	}
	ks := topology.Keyspace{Name: keyspace, Cluster: clusterName, Database: database, Table: "orders", ShardKey: "user_id", Shards: b.shards}
	topo.Keyspaces = append([]topology.Keyspace{ks}, b.extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.store.PutTopology(ctx, topo, -1); err != nil {
		t.Fatalf("topology: %v", err)
	}
	for _, k := range topo.Keyspaces {
		if _, err := shardmap.Save(ctx, b.store, shardmap.New(k, topo), 0, nil, topo); err != nil {
			t.Fatalf("shard map of %s: %v", k.Name, err)
		}
	}
	m := shardmap.New(ks, topo)
	table, err := shardmap.Compile(m)
	if err != nil {
		t.Fatalf("compile shard map: %v", err)
	}
	b.topo, b.table = topo, table
	for _, name := range dcNames() {
		in := b.dcs[name].db.Master
		rec := state.MasterRecord{DC: name, Cluster: clusterName, Instance: name + "-" + in.Name(), Addr: in.Addr(),
			Term: 1, UpdatedAt: time.Now().UTC(), Reason: "test bed"}
		if _, err := b.store.PutMaster(ctx, rec, 0, nil); err != nil {
			t.Fatalf("master record of %s: %v", name, err)
		}
	}
	// User ids by owning DC, for writers that keep to their own shards.
	for uid := int64(1); len(b.owned[dcA1]) < 4096 || len(b.owned[dcB1]) < 4096 || len(b.owned[dcA2]) < 4096; uid++ {
		rt, err := b.table.LookupString(strconv.FormatInt(uid, 10))
		if err != nil {
			t.Fatalf("route %d: %v", uid, err)
		}
		b.owned[rt.Owner] = append(b.owned[rt.Owner], uid)
	}
}

// shardOf is the shard of a user id.
func (b *bed) shardOf(uid int64) int {
	rt, err := b.table.LookupString(strconv.FormatInt(uid, 10))
	if err != nil {
		b.t.Fatalf("route %d: %v", uid, err)
	}
	return rt.Shard
}

// instances returns the DC's instances, bootstrapped master first.
func (d *dc) instances() []*mysqld.Instance {
	return append([]*mysqld.Instance{d.db.Master}, d.db.Replicas...)
}

// currentMaster is the instance the test treats as the DC's master.
func (d *dc) currentMaster() *mysqld.Instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.master
}

// app returns an app-user pool on the DC's current master.
func (d *dc) app() *sql.DB { return d.appOn(d.currentMaster()) }

// appOn returns an app-user pool on inst (short timeouts, so that writers
// notice a dead master quickly).
func (d *dc) appOn(in *mysqld.Instance) *sql.DB {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.pools[in.Name()]; ok {
		return p
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = d.db.AppUser, d.db.AppPassword, "tcp", in.Addr(), database
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 15*time.Second, 15*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		panic(fmt.Sprintf("app DSN: %v", err))
	}
	p := sql.OpenDB(conn)
	p.SetMaxIdleConns(32)
	d.pools[in.Name()] = p
	return p
}

// admin returns root's pool on the DC's current master.
func (d *dc) admin(t testing.TB) *sql.DB {
	t.Helper()
	return d.db.AdminDB(d.currentMaster())
}

func (b *bed) closePools() {
	for _, d := range b.dcs {
		d.mu.Lock()
		for _, p := range d.pools {
			_ = p.Close()
		}
		d.pools = map[string]*sql.DB{}
		d.mu.Unlock()
	}
}

// reset empties shop.orders, the dedup table and the ordering guard's
// tables in every DC (on the masters, as root; the statements replicate
// inside the DC and reship does not ship DDL) once the collectors are idle.
func (b *bed) reset(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.waitIdle(t)
	for _, name := range dcNames() {
		admin := b.dcs[name].admin(t)
		stmts := []string{"TRUNCATE TABLE " + database + ".orders"}
		for _, table := range []string{dedupTable, "drplane_row_position", "drplane_origin_position"} {
			var n int
			if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
				database, table).Scan(&n); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if n > 0 {
				stmts = append(stmts, "TRUNCATE TABLE "+database+"."+table)
			}
		}
		for _, stmt := range stmts {
			if _, err := admin.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %s: %v", name, stmt, err)
			}
		}
	}
}
