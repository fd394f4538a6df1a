package reship

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embedetcd"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/reship/internal/ship"
)

const (
	testDC      = "dc-a"
	peerDC      = "dc-b"
	testCluster = "main"
	waitLong    = 20 * time.Second
)

// ordersDDL is the sample keyspace's table; notesDDL a table outside every
// keyspace.
const (
	ordersDDL = "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, " +
		"note VARCHAR(255), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
	notesDDL = "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)"
)

// bed is a DC with a MariaDB cluster, etcd holding topology, shard map and
// master record, and NATS for two DCs.
type bed struct {
	t     testing.TB
	db    *harness.MariaDBCluster
	store *state.Store
	mesh  *embednats.Mesh
	topo  topology.Topology
	table *shardmap.Table
	js    jetstream.JetStream
	// proxy is in front of the bootstrapped master: the master record
	// points at it until the failover.
	proxy *harness.Proxy
	etcd  *embedetcd.Cluster
	// binlogPosAt is a position remembered by the test.
	binlogPosAt string
}

// startBed starts the bed with a cluster of instances MariaDB servers (a
// lone master runs without semi-sync).
func startBed(t testing.TB, instances int, args ...string) *bed {
	t.Helper()
	var (
		db   *harness.MariaDBCluster
		mesh *embednats.Mesh
		wg   sync.WaitGroup
	)
	wg.Go(func() { mesh = harness.StartNATS(t, testDC, peerDC) })
	opts := harness.MariaDBOptions{Instances: instances, Schema: []string{ordersDDL, notesDDL}, Args: args}
	if instances == 1 {
		opts.SemiSyncTimeout = 50 * time.Millisecond
	}
	db = harness.StartMariaDB(t, opts)
	if instances == 1 {
		_, err := db.AdminDB(db.Master).Exec("SET GLOBAL rpl_semi_sync_master_enabled = 0")
		require.NoError(t, err)
	}
	wg.Wait()
	ec := harness.StartEtcd(t, 1)
	b := &bed{t: t, db: db, store: state.New(harness.EtcdClientFor(t, ec), ""), mesh: mesh, etcd: ec}
	main := topology.Cluster{Name: testCluster, DC: testDC}
	for _, in := range b.instances() {
		main.Instances = append(main.Instances, topology.Instance{Name: in.Name(), Addr: in.Addr()})
	}
	ks := topology.Keyspace{Name: "orders", Cluster: testCluster, Database: db.Database, Table: "orders", ShardKey: "user_id", Shards: 8}
	b.topo = topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: testDC, City: "city-a"}, {Name: peerDC, City: "city-b"}},
		Clusters: []topology.Cluster{main, {Name: testCluster, DC: peerDC, Instances: []topology.Instance{
			{Name: "b-db1", Addr: "127.0.0.1:9"},
		}}},
		Keyspaces: []topology.Keyspace{ks},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.store.PutTopology(ctx, b.topo, -1)
	require.NoError(t, err)
	m := shardmap.New(ks, b.topo)
	_, err = shardmap.Save(ctx, b.store, m, 0, nil, b.topo)
	require.NoError(t, err)
	b.table, err = shardmap.Compile(m)
	require.NoError(t, err)
	b.proxy = harness.Toxiproxy(t, "master", db.Master.Addr())
	_, err = b.store.PutMaster(ctx, state.MasterRecord{
		DC: testDC, Cluster: testCluster, Instance: db.Master.Name(), Addr: b.proxy.Listen(), Term: 1,
		UpdatedAt: time.Now().UTC(), Reason: "bootstrap",
	}, 0, nil)
	require.NoError(t, err)
	b.js = harness.JetStream(t, mesh, testDC)
	return b
}

func (b *bed) instances() []*mysqld.Instance {
	return append([]*mysqld.Instance{b.db.Master}, b.db.Replicas...)
}

// engine is a running Engine.
type engine struct {
	*Engine
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startEngine runs an engine with a fresh registry until stop or the end
// of the test.
func (b *bed) startEngine(start string) *engine {
	return b.startEngineWindow(start, 64)
}

// startEngineWindow is startEngine with a publish window.
func (b *bed) startEngineWindow(start string, window int) *engine {
	return b.startEngineWith(start, window, false)
}

// startEngineWith is startEngineWindow, shipping every transaction at once
// when undurable is set.
func (b *bed) startEngineWith(start string, window int, undurable bool) *engine {
	t := b.t
	t.Helper()
	pub, err := nats.Connect(b.mesh.URL(testDC), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(pub.Close)
	reg := prometheus.NewRegistry()
	eng, err := NewEngine(Options{
		DC: testDC, Cluster: testCluster, Store: b.store, NATS: harness.NATSConn(t, b.mesh, testDC), Publish: pub,
		User: b.db.Users.ReplUser, Password: b.db.Users.ReplPassword, Start: start, Window: window,
		CheckpointInterval: 20 * time.Millisecond, Registry: reg,
		Heartbeat: 200 * time.Millisecond, ReadTimeout: time.Second, shipUndurable: undurable,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e := &engine{Engine: eng, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- eng.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

// stop ends the engine and waits for it (idempotent).
func (e *engine) stop() {
	e.cancel()
	if err, ok := <-e.done; ok {
		if err != nil && !errors.Is(err, context.Canceled) {
			panic(err)
		}
		close(e.done)
	}
}

func (e *engine) counter(name string, labels ...string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		return -1
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// checkpoint reads the stored checkpoint ("" and false when none).
func (b *bed) checkpoint() (ship.Checkpoint, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp, _, err := state.Get[ship.Checkpoint](ctx, b.store, ship.CheckpointKey(b.store, testDC, testCluster))
	if err != nil {
		return ship.Checkpoint{}, false
	}
	return cp, true
}

// binlogPos returns the gtid_binlog_pos of inst.
func (b *bed) binlogPos(inst *mysqld.Instance) string {
	var pos string
	require.NoError(b.t, b.db.AdminDB(inst).QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos))
	return pos
}

// waitCaughtUp waits until the stored checkpoint equals inst's binlog
// position.
func (b *bed) waitCaughtUp(inst *mysqld.Instance) {
	b.t.Helper()
	want := b.binlogPos(inst)
	check.For(b.t, waitLong, 10*time.Millisecond, func() error {
		cp, ok := b.checkpoint()
		return check.That(ok && cp.Position == want, "checkpoint never reached %s", want)
	})
}

// outMsg is one message of the outbound stream.
type outMsg struct {
	seq     uint64
	subject string
	msgID   string
	ev      *drplanev1.ChangeEvent
}

// readOut returns every message of OUT_<dc>.
func (b *bed) readOut() []outMsg {
	t := b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, embednats.OutStream(testDC))
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []outMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		var ev drplanev1.ChangeEvent
		require.NoError(t, proto.Unmarshal(raw.Data, &ev))
		out = append(out, outMsg{seq: seq, subject: raw.Subject, msgID: raw.Header.Get(jetstream.MsgIDHeader), ev: &ev})
	}
	return out
}

// shardOf is the shard the bed's map gives a user id.
func (b *bed) shardOf(userID int64) int32 {
	rt, err := b.table.LookupString(decimal(userID))
	require.NoError(b.t, err)
	return int32(rt.Shard)
}

// exec runs statements in one transaction on db.
func exec(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	tx, err := db.Begin()
	require.NoError(t, err)
	for _, s := range stmts {
		_, err := tx.Exec(s)
		require.NoError(t, err, s)
	}
	require.NoError(t, tx.Commit())
}

// colMap indexes columns by name, rendering values as text.
func colMap(cols []*drplanev1.Column) map[string]string {
	m := map[string]string{}
	for _, c := range cols {
		var v string
		switch k := c.GetValue().GetKind().(type) {
		case *drplanev1.Value_Int:
			v = decimal(k.Int)
		case *drplanev1.Value_Uint:
			v = decimal(int64(k.Uint))
		case *drplanev1.Value_Text:
			v = k.Text
		case *drplanev1.Value_Null:
			v = "NULL"
		case *drplanev1.Value_Raw:
			v = string(k.Raw)
		}
		m[c.GetName()] = v
	}
	return m
}

func decimal(n int64) string { return strconv.FormatInt(n, 10) }
