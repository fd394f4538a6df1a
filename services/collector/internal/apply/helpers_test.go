package apply_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/masterdb"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/collector/internal/apply"
)

// The test DCs: changes from dcA1 and dcA2 are applied in dcB1.
const (
	dcA1     = "dc-a1"
	dcA2     = "dc-a2"
	dcB1     = "dc-b1"
	keyspace = "orders"
	database = "shop"
)

const (
	waitLong = 30 * time.Second
	poll     = 20 * time.Millisecond
)

// schema is the keyspace database's tables. Triggers count every row
// operation applied to orders in apply_count, so a request applied twice
// shows even when its row images are the same.
var schema = []string{
	`CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL,
	  note VARCHAR(255), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`,
	`CREATE TABLE items (order_id BIGINT NOT NULL, line INT NOT NULL, sku VARCHAR(32) NOT NULL, qty INT NOT NULL,
	  PRIMARY KEY (order_id, line))`,
	`CREATE TABLE apply_count (id INT PRIMARY KEY, n BIGINT NOT NULL)`,
	`INSERT INTO apply_count VALUES (1, 0)`,
	`CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW UPDATE apply_count SET n = n + 1 WHERE id = 1`,
	`CREATE TRIGGER orders_bd BEFORE DELETE ON orders FOR EACH ROW UPDATE apply_count SET n = n + 1 WHERE id = 1`,
	`CREATE TABLE plain (id BIGINT PRIMARY KEY)`,
	// bench is orders without the counting triggers, for the throughput run.
	`CREATE TABLE bench (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL,
	  note VARCHAR(255), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`,
}

// keyspaceTables are the keyspace's tables besides orders. nosuch is
// declared but never created; apply_count and plain are tables of the
// database outside the keyspace.
var keyspaceTables = []string{"items", "bench", "nosuch"}

// shared holds the parts every subtest uses: one MariaDB cluster (master
// and a replica) and one etcd.
type shared struct {
	db    *harness.MariaDBCluster
	cli   *clientv3.Client
	roots int // etcd namespaces handed out
}

func startShared(t *testing.T) *shared {
	t.Helper()
	began := time.Now()
	var (
		wg  sync.WaitGroup
		db  *harness.MariaDBCluster
		cli *clientv3.Client
	)
	wg.Go(func() {
		db = harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 2, Database: database, Schema: schema})
	})
	cli = harness.EtcdClient(t)
	wg.Wait()
	t.Logf("MariaDB and etcd up in %v", time.Since(began))
	return &shared{db: db, cli: cli}
}

// bed is one subtest's world: fresh NATS servers for three DCs with the
// streams set up, an etcd namespace, a master resolver for dcB1, and empty
// tables.
type bed struct {
	t      *testing.T
	sh     *shared
	st     *state.Store
	mesh   *embednats.Mesh
	js     map[string]jetstream.JetStream
	nc     *nats.Conn // dcB1
	master *masterdb.Resolver
	lease  clientv3.LeaseID
	app    *sql.DB
}

func newBed(t *testing.T, sh *shared) *bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	sh.roots++
	root := fmt.Sprintf("/t%d", sh.roots)
	b := &bed{t: t, sh: sh, st: state.New(sh.cli, root), js: map[string]jetstream.JetStream{}}
	admin := sh.db.AdminDB(sh.db.Master)
	for _, q := range []string{"SET GLOBAL read_only = 0", "DELETE FROM shop.orders", "DELETE FROM shop.items",
		"UPDATE shop.apply_count SET n = 0", "DROP TABLE IF EXISTS shop." + apply.DedupTable,
		"DROP TABLE IF EXISTS shop." + apply.RowPositionTable, "DROP TABLE IF EXISTS shop." + apply.OriginPositionTable,
		"DELETE FROM shop.plain", "DELETE FROM shop.bench"} {
		_, err := admin.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	b.app = sh.db.AppDB(sh.db.Master)

	b.mesh = harness.StartNATS(t, dcA1, dcA2, dcB1)
	for _, dc := range b.mesh.DCs() {
		b.js[dc] = harness.JetStream(t, b.mesh, dc)
	}
	b.nc = harness.NATSConn(t, b.mesh, dcB1)
	for _, origin := range []string{dcA1, dcA2} {
		require.NoError(t, embednats.EnsureOutbound(ctx, b.js[origin], origin, others(origin), embednats.StreamOptions{}))
	}
	js := b.js[dcB1]
	pending, err := embednats.EnsureInbound(ctx, js, dcB1, others(dcB1), embednats.StreamOptions{})
	require.NoError(t, err)
	require.Empty(t, pending, "the origins' sourcing consumers exist")
	require.NoError(t, embednats.EnsureInboundReplay(ctx, js, dcB1))
	require.NoError(t, embednats.EnsureDLQ(ctx, js, dcB1, embednats.StreamOptions{}))
	require.NoError(t, embednats.EnsureLedger(ctx, js, dcB1, embednats.StreamOptions{}))

	_, err = b.st.PutMaster(ctx, state.MasterRecord{DC: dcB1, Cluster: "main", Instance: sh.db.Master.Name(),
		Addr: sh.db.Master.Addr(), Term: 1, UpdatedAt: time.Now().UTC(), Reason: "test"}, 0, nil)
	require.NoError(t, err)
	b.master = masterdb.Endpoint{Cluster: "main", Database: database, User: sh.db.AppUser, Password: config.Secret(sh.db.AppPassword)}.
		Resolver(b.st, dcB1, zerolog.Nop())
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.master.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	check.For(t, waitLong, poll, func() error { return check.That(b.master.Check(ctx) == nil, "master resolver") })

	lease, err := sh.cli.Grant(ctx, 30)
	require.NoError(t, err)
	b.lease = lease.ID
	return b
}

func others(dc string) []string {
	var out []string
	for _, d := range []string{dcA1, dcA2, dcB1} {
		if d != dc {
			out = append(out, d)
		}
	}
	return out
}

// options returns the applier options of dcB1, with a fresh registry.
func (b *bed) options(mod func(*apply.Options)) apply.Options {
	o := apply.Options{
		DC: dcB1, ID: "test", NATS: b.nc, Master: b.master, Store: b.st,
		Keyspaces: func() []topology.Keyspace {
			return []topology.Keyspace{{Name: keyspace, Cluster: "main", Database: database, Table: "orders",
				Tables: keyspaceTables, ShardKey: "user_id", Shards: 8}}
		},
		Lease: func() clientv3.LeaseID { return b.lease }, AckWait: 2 * time.Second,
		WatermarkInterval: 50 * time.Millisecond, StatsInterval: 100 * time.Millisecond,
		Logger: zerolog.New(zerolog.NewTestWriter(b.t)).Level(zerolog.WarnLevel), Registry: prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&o)
	}
	return o
}

// running is an applier running in the background.
type running struct {
	a    *apply.Applier
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan struct{}
	err  error // Run's result, once done is closed
}

// start runs an applier until the test ends (or stop) and waits until it
// is ready.
func (b *bed) start(mod func(*apply.Options), hook func(*apply.Applier)) *running {
	b.t.Helper()
	o := b.options(mod)
	a, err := apply.New(o)
	require.NoError(b.t, err)
	if hook != nil {
		hook(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, reg: o.Registry.(*prometheus.Registry), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = a.Run(ctx)
	}()
	b.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			b.t.Errorf("applier did not stop")
		}
	})
	select {
	case <-a.Ready():
	case <-r.done:
		b.t.Fatalf("applier stopped before ready: %v", r.err)
	case <-time.After(waitLong):
		b.t.Fatal("applier not ready")
	}
	return r
}

// wait waits until the applier's Run returned and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitLong):
		t.Fatal("applier still running")
		return nil
	}
}

// counter sums a counter (or histogram sample count) over its label sets.
func (r *running) counter(name string) float64 { return r.sum(name, false) }

// histSum sums the observed values of a histogram over its label sets.
func (r *running) histSum(name string) float64 { return r.sum(name, true) }

func (r *running) sum(name string, values bool) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil && values:
				sum += m.GetHistogram().GetSampleSum()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// publish sends events to their origin's outbound stream (they reach dcB1
// by sourcing) and waits for every PubAck, a thousand at a time.
func (b *bed) publish(evs ...*drplanev1.ChangeEvent) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), waitLong)
	defer cancel()
	for len(evs) > 0 {
		n := min(len(evs), 1000)
		var futures []jetstream.PubAckFuture
		for _, ev := range evs[:n] {
			data, err := proto.Marshal(ev)
			require.NoError(b.t, err)
			f, err := b.js[ev.GetOriginDc()].PublishAsync(
				fmt.Sprintf("%s.%s.%d", embednats.OutSubject(ev.GetOriginDc()), ev.GetKeyspace(), ev.GetShard()), data,
				jetstream.WithMsgID(ev.GetOriginDc()+":"+ev.GetRequestId()))
			require.NoError(b.t, err)
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				b.t.Fatalf("publish: %v", err)
			case ack := <-f.Ok():
				require.False(b.t, ack.Duplicate, "request published twice by the test")
			case <-ctx.Done():
				b.t.Fatalf("publish: %v", ctx.Err())
			}
		}
		evs = evs[n:]
	}
}

// publishRaw sends a raw payload as origin's message with msgID.
func (b *bed) publishRaw(origin, msgID string, data []byte) {
	b.t.Helper()
	_, err := b.js[origin].Publish(b.t.Context(), embednats.OutSubject(origin)+"."+keyspace+".0", data, jetstream.WithMsgID(msgID))
	require.NoError(b.t, err)
}

// streamMsgs is a stream's message count (-1 if unreadable).
func (b *bed) streamMsgs(name string) int {
	ctx, cancel := context.WithTimeout(b.t.Context(), 2*time.Second)
	defer cancel()
	s, err := b.js[dcB1].Stream(ctx, name)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// waitDrained waits until IN_dcB1 holds want messages and the collector's
// consumer has delivered and seen acked every one of them.
func (b *bed) waitDrained(want int, timeout time.Duration) {
	b.t.Helper()
	in := embednats.InStream(dcB1)
	check.For(b.t, timeout, poll, func() error {
		if b.streamMsgs(in) != want {
			return check.That(false, "IN_%s drained (%d messages)", dcB1, want)
		}
		ctx, cancel := context.WithTimeout(b.t.Context(), 2*time.Second)
		defer cancel()
		c, err := b.js[dcB1].Consumer(ctx, in, apply.ConsumerName)
		if err != nil {
			return check.That(false, "IN_%s drained (%d messages)", dcB1, want)
		}
		info := c.CachedInfo()
		return check.That(info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= uint64(want), "IN_%s drained (%d messages)", dcB1, want)
	})
}

// scalar reads one integer.
func scalar(t *testing.T, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.QueryRowContext(t.Context(), q, args...).Scan(&n), q)
	return n
}

// --- events and the model they should produce ---

type orderRow struct {
	ID, User, Amount int64
	Note             *string
}

type itemRow struct {
	Order, Line int64
	SKU         string
	Qty         int64
}

// idSpan is the id range of one workload.
const idSpan = 10000

// model is the expected content of orders and items, and how many row
// operations on orders the triggers should count.
type model struct {
	orders map[int64]orderRow
	items  map[[2]int64]itemRow
	ops    int64
}

func newModel() *model {
	return &model{orders: map[int64]orderRow{}, items: map[[2]int64]itemRow{}}
}

func val(v any) *drplanev1.Value {
	switch x := v.(type) {
	case nil:
		return &drplanev1.Value{Kind: &drplanev1.Value_Null{Null: true}}
	case int64:
		return &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: x}}
	case *string:
		if x == nil {
			return val(nil)
		}
		return &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: *x}}
	case string:
		return &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: x}}
	}
	panic(fmt.Sprintf("val %T", v))
}

func col(name string, v any) *drplanev1.Column { return &drplanev1.Column{Name: name, Value: val(v)} }

func (o orderRow) cols() []*drplanev1.Column {
	return []*drplanev1.Column{col("id", o.ID), col("user_id", o.User), col("amount_cents", o.Amount), col("note", o.Note)}
}

func (i itemRow) cols() []*drplanev1.Column {
	return []*drplanev1.Column{col("order_id", i.Order), col("line", i.Line), col("sku", i.SKU), col("qty", i.Qty)}
}

// gen makes one origin's requests, with GTIDs in sequence.
type gen struct {
	origin string
	server int
	seq    int
}

func (g *gen) event(shard int32, table string, rows ...*drplanev1.RowChange) *drplanev1.ChangeEvent {
	g.seq++
	gtid := fmt.Sprintf("0-%d-%d", g.server, g.seq)
	now := timestamppb.Now()
	return &drplanev1.ChangeEvent{
		OriginDc: g.origin, RequestId: fmt.Sprintf("%s/%d", gtid, shard), Gtid: gtid, Keyspace: keyspace,
		Shard: shard, Schema: database, Table: table, Rows: rows, CommitTime: now, CapturedAt: now, Position: gtid,
	}
}

func (m *model) insertOrder(o orderRow) *drplanev1.RowChange {
	m.orders[o.ID] = o
	m.ops++
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{col("id", o.ID)}, After: o.cols()}
}

func (m *model) updateOrder(before, after orderRow) *drplanev1.RowChange {
	delete(m.orders, before.ID)
	m.orders[after.ID] = after
	m.ops++
	if before.ID != after.ID {
		m.ops++ // the old key is deleted first
	}
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{col("id", after.ID)},
		Before: before.cols(), After: after.cols()}
}

func (m *model) deleteOrder(o orderRow) *drplanev1.RowChange {
	delete(m.orders, o.ID)
	m.ops++
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_DELETE, Key: []*drplanev1.Column{col("id", o.ID)}, Before: o.cols()}
}

func (m *model) insertItem(i itemRow) *drplanev1.RowChange {
	m.items[[2]int64{i.Order, i.Line}] = i
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_INSERT,
		Key: []*drplanev1.Column{col("order_id", i.Order), col("line", i.Line)}, After: i.cols()}
}

func (m *model) deleteItem(i itemRow) *drplanev1.RowChange {
	delete(m.items, [2]int64{i.Order, i.Line})
	return &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_DELETE,
		Key: []*drplanev1.Column{col("order_id", i.Order), col("line", i.Line)}, Before: i.cols()}
}

// workload makes n requests of one origin over the ids [base, base+idSpan):
// inserts, updates (some moving the primary key), deletes, several rows
// per request, and item lines with a two-column key.
func (m *model) workload(g *gen, n int, base int64, seed uint64) []*drplanev1.ChangeEvent {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var evs []*drplanev1.ChangeEvent
	mine := func() []int64 {
		var ids []int64
		for id := range m.orders {
			if id >= base && id < base+idSpan {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		return ids
	}
	next := base
	for range n {
		shard := int32(rng.IntN(8))
		ids := mine()
		if rng.IntN(5) == 0 {
			// Item lines: insert two, or delete the lines of an order.
			var its []itemRow
			for k, it := range m.items {
				if k[0] >= base && k[0] < base+idSpan {
					its = append(its, it)
				}
			}
			if len(its) > 0 && rng.IntN(2) == 0 {
				sort.Slice(its, func(i, j int) bool { return its[i].Order*10+its[i].Line < its[j].Order*10+its[j].Line })
				evs = append(evs, g.event(shard, "items", m.deleteItem(its[0])))
				continue
			}
			o := base + rng.Int64N(1000)
			evs = append(evs, g.event(shard, "items",
				m.insertItem(itemRow{Order: o, Line: 1, SKU: fmt.Sprintf("sku-%d", rng.IntN(100)), Qty: 1}),
				m.insertItem(itemRow{Order: o, Line: 2, SKU: "sku-x", Qty: rng.Int64N(9) + 1})))
			continue
		}
		var rows []*drplanev1.RowChange
		for range 1 + rng.IntN(3) {
			switch op := rng.IntN(10); {
			case op < 4 || len(ids) < 3:
				note := fmt.Sprintf("n%d", rng.IntN(1000))
				var np *string
				if rng.IntN(4) > 0 {
					np = &note
				}
				rows = append(rows, m.insertOrder(orderRow{ID: next, User: rng.Int64N(50), Amount: rng.Int64N(10000), Note: np}))
				next++
			case op < 8:
				id := ids[rng.IntN(len(ids))]
				before, ok := m.orders[id]
				if !ok {
					continue
				}
				after := before
				after.Amount = rng.Int64N(10000)
				if op == 7 {
					after.ID = next // moves the primary key
					next++
				}
				rows = append(rows, m.updateOrder(before, after))
			default:
				id := ids[rng.IntN(len(ids))]
				if o, ok := m.orders[id]; ok {
					rows = append(rows, m.deleteOrder(o))
				}
			}
			ids = mine()
		}
		if len(rows) > 0 {
			evs = append(evs, g.event(shard, "orders", rows...))
		}
	}
	if next > base+idSpan {
		panic("workload ran out of ids")
	}
	return evs
}

// requireModel checks that db's tables equal the model.
func requireModel(t *testing.T, db *sql.DB, m *model) {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT id, user_id, amount_cents, note FROM orders")
	require.NoError(t, err)
	got := map[int64]orderRow{}
	for rows.Next() {
		var o orderRow
		var note sql.NullString
		require.NoError(t, rows.Scan(&o.ID, &o.User, &o.Amount, &note))
		if note.Valid {
			o.Note = &note.String
		}
		got[o.ID] = o
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, m.orders, got, "orders")
	rows, err = db.QueryContext(t.Context(), "SELECT order_id, line, sku, qty FROM items")
	require.NoError(t, err)
	items := map[[2]int64]itemRow{}
	for rows.Next() {
		var i itemRow
		require.NoError(t, rows.Scan(&i.Order, &i.Line, &i.SKU, &i.Qty))
		items[[2]int64{i.Order, i.Line}] = i
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, m.items, items, "items")
}
