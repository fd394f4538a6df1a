package collector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/collector/internal/apply"
	"github.com/drplane/drplane/services/collector/internal/collector"
)

const (
	waitLong = 30 * time.Second
	poll     = 20 * time.Millisecond
)

// syncBuffer collects the service's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConfigValidation(t *testing.T) {
	base := func() *collector.Config {
		c := collector.DefaultConfig()
		c.DC, c.NATSURL, c.MySQL.User = "dc-b1", "nats://127.0.0.1:4222", "app"
		c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		return c
	}
	require.NoError(t, base().Validate())
	c := collector.DefaultConfig()
	assert.Equal(t, 500, c.BatchSize)
	assert.Equal(t, 5*time.Millisecond, c.BatchWait)
	assert.Equal(t, 500*time.Millisecond, c.WatermarkInterval)
	assert.False(t, c.Test.DuplicateDelivery)
	for field, mod := range map[string]func(*collector.Config){
		"batch_size":            func(c *collector.Config) { c.BatchSize = 0 },
		"batch_wait":            func(c *collector.Config) { c.BatchWait = 2 * time.Second },
		"ack_wait":              func(c *collector.Config) { c.AckWait = 100 * time.Millisecond },
		"max_redeliveries":      func(c *collector.Config) { c.MaxRedeliveries = -1 },
		"watermark_interval":    func(c *collector.Config) { c.WatermarkInterval = 0 },
		"stats_interval":        func(c *collector.Config) { c.StatsInterval = time.Hour },
		"ledger_buffer":         func(c *collector.Config) { c.LedgerBuffer = 0 },
		"test.hold_batch_after": func(c *collector.Config) { c.Test.HoldBatchAfter = -1 },
		"nats_url":              func(c *collector.Config) { c.NATSURL = "" },
		"mysql.user":            func(c *collector.Config) { c.MySQL.User = "" },
	} {
		c := base()
		mod(c)
		err := c.Validate()
		var ce *config.Error
		require.ErrorAs(t, err, &ce, field)
		assert.Equal(t, field, ce.Field)
	}
}

func TestHelpAndCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := daemon.MainContext(t.Context(), collector.Spec(collector.DefaultConfig()), []string{"--help"}, &out, &errOut)
	require.Equal(t, daemon.ExitOK, code)
	help := out.String()
	for _, want := range []string{"skip_replication=1", "drplane_applied", "DLQ_<dc>", "--batch-size", "--max-redeliveries",
		"test.duplicate_delivery", "TEST-ONLY"} {
		assert.Contains(t, help, want)
	}
	assert.NotContains(t, help, "NOT implemented")

	out.Reset()
	code = daemon.MainContext(t.Context(), collector.Spec(collector.DefaultConfig()), []string{"--check-config", "--dc", "dc-b1",
		"--etcd", "http://127.0.0.1:2379", "--nats", "nats://127.0.0.1:4222", "--batch-size", "64"}, &out, &errOut)
	require.Equal(t, daemon.ExitConfig, code, "mysql.user is missing")
	assert.Contains(t, errOut.String(), "mysql.user")
}

// TestServiceAppliesRemoteChanges runs the collector service as its binary
// would, against MariaDB, etcd and two NATS servers: it sets up its
// streams from the topology, applies a change from the other DC once
// although the test hook delivers it twice, and reports ready.
func TestServiceAppliesRemoteChanges(t *testing.T) {
	const dcA, dcB = "dc-a1", "dc-b1"
	var db *harness.MariaDBCluster
	var wg sync.WaitGroup
	wg.Go(func() {
		db = harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 2, Schema: []string{
			"CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, note VARCHAR(255))",
		}})
	})
	etcd := harness.StartEtcd(t, 1)
	mesh := harness.StartNATS(t, dcA, dcB)
	wg.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitLong)
	defer cancel()

	st := state.New(harness.EtcdClientFor(t, etcd), "")
	topo := topology.Topology{
		Cities: []topology.City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []topology.DC{{Name: dcA, City: "city-a"}, {Name: dcB, City: "city-b"}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: dcA, Instances: []topology.Instance{{Name: "a-db1", Addr: "127.0.0.1:1"}}},
			{Name: "main", DC: dcB, Instances: []topology.Instance{{Name: db.Master.Name(), Addr: db.Master.Addr()}}},
		},
		Keyspaces: []topology.Keyspace{{Name: "orders", Cluster: "main", Database: db.Database, Table: "orders", ShardKey: "user_id", Shards: 4}},
	}
	_, err := st.PutTopology(ctx, topo, 0)
	require.NoError(t, err)
	_, err = st.PutMaster(ctx, state.MasterRecord{DC: dcB, Cluster: "main", Instance: db.Master.Name(), Addr: db.Master.Addr(),
		Term: 1, UpdatedAt: time.Now().UTC(), Reason: "test"}, 0, nil)
	require.NoError(t, err)
	// dc-a1's side of the transport, as its reship would set it up.
	jsA := harness.JetStream(t, mesh, dcA)
	require.NoError(t, embednats.EnsureOutbound(ctx, jsA, dcA, []string{dcB}, embednats.StreamOptions{}))

	cfgFile := filepath.Join(t.TempDir(), "collector.yaml")
	require.NoError(t, os.WriteFile(cfgFile, fmt.Appendf(nil, `mysql:
  cluster: main
  database: %s
  user: %s
  password: %s
ack_wait: 2s
watermark_interval: 50ms
stats_interval: 200ms
test:
  duplicate_delivery: true
`, db.Database, db.AppUser, db.AppPassword), 0o600))
	args := []string{"--config", cfgFile, "--dc", dcB, "--id", "collector-1", "--etcd", strings.Join(etcd.Endpoints(), ","),
		"--nats", mesh.URL(dcB), "--log-level", "warn"}
	logs := &syncBuffer{}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	code := -1
	go func() {
		defer close(done)
		code = daemon.MainContext(sctx, collector.Spec(collector.DefaultConfig()), args, io.Discard, logs)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(waitLong):
			t.Errorf("collector did not stop")
		}
	})

	// Registered, honest about its logic, and ready once applying.
	var rec state.ServiceRecord
	check.For(t, waitLong, poll, func() error {
		recs, err := st.Services(ctx, dcB)
		if err != nil || len(recs) != 1 {
			return check.That(false, "registration; log:\n%s", logs.String())
		}
		rec = recs[0]
		return nil
	})
	assert.Equal(t, "collector", rec.Service)
	assert.True(t, rec.LogicImplemented)
	check.For(t, waitLong, poll, func() error {
		return check.That(httpStatus(ctx, "http://"+rec.HealthAddr+"/readyz") == http.StatusOK, "ready; log:\n%s", logs.String())
	})

	// Its streams exist, the inbound one sourcing dc-a1 and taking replays.
	jsB := harness.JetStream(t, mesh, dcB)
	for _, name := range []string{embednats.InStream(dcB), embednats.DLQStream(dcB), embednats.LedgerStream(dcB)} {
		_, err := jsB.Stream(ctx, name)
		require.NoError(t, err, name)
	}
	in, err := jsB.Stream(ctx, embednats.InStream(dcB))
	require.NoError(t, err)
	require.Len(t, in.CachedInfo().Config.Sources, 1)
	assert.Equal(t, embednats.OutStream(dcA), in.CachedInfo().Config.Sources[0].Name)

	// A change from dc-a1 arrives, is delivered twice, applied once.
	ev := &drplanev1.ChangeEvent{OriginDc: dcA, RequestId: "0-7-1/2", Gtid: "0-7-1", Keyspace: "orders", Shard: 2,
		Schema: db.Database, Table: "orders", CommitTime: timestamppb.Now(), Rows: []*drplanev1.RowChange{{
			Op:  drplanev1.RowOp_ROW_OP_INSERT,
			Key: []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 42}}}},
			After: []*drplanev1.Column{
				{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 42}}},
				{Name: "user_id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 7}}},
				{Name: "amount_cents", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 1234}}},
				{Name: "note", Value: &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: "from dc-a1"}}},
			},
		}}}
	data, err := proto.Marshal(ev)
	require.NoError(t, err)
	_, err = jsA.Publish(ctx, embednats.OutSubject(dcA)+".orders.2", data, jetstream.WithMsgID(dcA+":"+ev.GetRequestId()))
	require.NoError(t, err)

	app := db.AppDB(db.Master)
	check.For(t, waitLong, poll, func() error {
		var note string
		return check.That(app.QueryRowContext(ctx, "SELECT note FROM orders WHERE id = 42").Scan(&note) == nil && note == "from dc-a1", "the change is applied; log:\n%s", logs.String())
	})
	check.For(t, waitLong, poll, func() error {
		info, err := in.Info(ctx)
		if err != nil || info.State.Msgs != 2 {
			return check.That(false, "the original and its copy are consumed")
		}
		c, err := jsB.Consumer(ctx, embednats.InStream(dcB), apply.ConsumerName)
		if err != nil {
			return err
		}
		return check.That(c.CachedInfo().NumPending == 0 && c.CachedInfo().NumAckPending == 0, "the original and its copy are consumed")
	})
	var n int
	require.NoError(t, app.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+apply.DedupTable).Scan(&n))
	assert.Equal(t, 1, n, "applied once")

	// Watermark and statistics in etcd; metrics on /metrics.
	check.For(t, waitLong, poll, func() error {
		w, _, err := state.Get[apply.Watermark](ctx, st, apply.WatermarkKey(st, dcB, dcA, "orders", 2))
		if err != nil {
			return err
		}
		return check.That(w.RequestID == ev.GetRequestId(), "watermark")
	})
	check.For(t, waitLong, poll, func() error {
		s, _, err := state.Get[apply.Stats](ctx, st, apply.StatsKey(st, dcB, dcA))
		if err != nil {
			return err
		}
		return check.That(s.Applied == 1 && s.Duplicates == 1 && s.Collector == "collector-1", "stats")
	})
	metrics := httpBody(ctx, t, "http://"+rec.HealthAddr+"/metrics")
	assert.Contains(t, metrics, `drplane_collector_applied_total{origin="dc-a1"} 1`)
	assert.Contains(t, metrics, `drplane_collector_duplicates_total{origin="dc-a1"} 1`)
	assert.Contains(t, metrics, "drplane_collector_lag_seconds_bucket")

	stop()
	select {
	case <-done:
		assert.Equal(t, daemon.ExitOK, code, "log:\n%s", logs.String())
	case <-time.After(waitLong):
		t.Fatal("collector did not stop")
	}
	assert.Contains(t, logs.String(), "TEST HOOK test.duplicate_delivery")
}

func httpStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func httpBody(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(body)
}
