package bus_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

// The sync setting is read from real servers' monitoring endpoints: the
// servers drplane starts (every second by default, or every write), and a
// NATS server left at its own default (2 minutes).
func TestReadJetStreamSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}

	def := harness.StartNATS(t, "dc-a1")
	s, err := bus.ReadJetStreamSync(ctx, hc, def.MonitorURL("dc-a1"))
	require.NoError(t, err)
	assert.Equal(t, bus.JetStreamSync{Interval: embednats.DefaultSyncInterval}, s)
	assert.Equal(t, "1s", s.String())

	always, err := embednats.Start(ctx, embednats.Options{DCs: []string{"dc-a1"}, Dir: t.TempDir(), Logger: zerolog.Nop(), SyncAlways: true})
	require.NoError(t, err)
	t.Cleanup(always.Close)
	s, err = bus.ReadJetStreamSync(ctx, hc, always.MonitorURL("dc-a1")+"/")
	require.NoError(t, err)
	assert.Equal(t, "always", s.String())
	assert.True(t, s.Always)

	plain, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, HTTPHost: "127.0.0.1", HTTPPort: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
	})
	require.NoError(t, err)
	plain.Start()
	t.Cleanup(plain.Shutdown)
	require.True(t, plain.ReadyForConnections(10*time.Second))
	s, err = bus.ReadJetStreamSync(ctx, hc, "http://"+plain.MonitorAddr().String())
	require.NoError(t, err)
	assert.Equal(t, bus.JetStreamSync{Interval: 2 * time.Minute}, s, "NATS's own default")

	noJS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"server_id":"x"}`)) }))
	t.Cleanup(noJS.Close)
	_, err = bus.ReadJetStreamSync(ctx, hc, noJS.URL)
	require.ErrorIs(t, err, bus.ErrSyncUnknown)
	assert.Contains(t, err.Error(), "no JetStream configuration")

	_, err = bus.ReadJetStreamSync(ctx, hc, "http://drplane:secret@127.0.0.1:1")
	require.ErrorIs(t, err, bus.ErrSyncUnknown)
	assert.NotContains(t, err.Error(), "secret", "credentials in the URL are not printed")
}

// The reporter publishes what it read, or why it could not, on its lease.
func TestSyncReporter(t *testing.T) {
	cli := harness.EtcdClient(t)
	st := state.New(cli, "")
	mesh := harness.StartNATS(t, "dc-a1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lease, err := cli.Grant(ctx, 60)
	require.NoError(t, err)
	leaseOf := func() clientv3.LeaseID { return lease.ID }

	r := bus.NewSyncReporter(bus.SyncReporterOptions{
		DC: "dc-a1", Reporter: "reship-1", MonitorURL: mesh.MonitorURL("dc-a1"), Store: st, Lease: leaseOf, Logger: zerolog.Nop(),
	})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	var got []state.NATSSync
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		got, err = st.NATSSyncs(ctx, "dc-a1")
		if err != nil {
			return err
		}
		return check.That(len(got) == 1, "%d records, want the reporter's one", len(got))
	})
	stop()
	require.NoError(t, <-done)
	assert.Equal(t, "reship-1", got[0].Reporter)
	assert.Empty(t, got[0].Error)
	assert.False(t, got[0].Always)
	assert.Equal(t, time.Second, got[0].Interval)
	kv, err := cli.Get(ctx, st.Key("natssync", "dc-a1", "reship-1"))
	require.NoError(t, err)
	require.Len(t, kv.Kvs, 1)
	assert.Equal(t, int64(lease.ID), kv.Kvs[0].Lease)

	unset := bus.NewSyncReporter(bus.SyncReporterOptions{DC: "dc-a2", Reporter: "reship-2", Store: st, Lease: leaseOf, Logger: zerolog.Nop()})
	rec := unset.Read(ctx)
	assert.Contains(t, rec.Error, "nats_monitor_url is not configured")
	assert.False(t, rec.ObservedAt.IsZero())
}
