package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/agent"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// running is one in-process agent.
type running struct {
	id    string
	a     *agent.Agent
	stop  context.CancelCauseFunc
	done  chan error
	store *state.Store
}

// testConfig is the agents' configuration in these tests.
func testConfig(e *hatest.Env, id string) *agent.Config {
	cfg := agent.DefaultConfig()
	cfg.DC, cfg.ID = hatest.DC, id
	cfg.Etcd.Endpoints = e.Etcd.Endpoints()
	u := e.DB.Users
	cfg.MySQL = agent.MySQL{User: u.AdminUser, Password: config.Secret(u.AdminPassword),
		ReplUser: u.ReplUser, ReplPassword: config.Secret(u.ReplPassword)}
	cfg.PollInterval = 100 * time.Millisecond
	cfg.SemiSyncTimeout = 60 * time.Second
	cfg.FailoverBudget = agent.FailoverBudget{}
	cfg.Election = agent.Election{TTL: 4 * time.Second, FenceBefore: time.Second, SinglePointLimit: 20 * time.Second}
	cfg.Repair.Dir = e.T.TempDir()
	return cfg
}

// startAgent runs an agent on its own etcd client (cli, or a new one for
// every member when nil) until the test ends.
func startAgent(t testing.TB, e *hatest.Env, cfg *agent.Config, cli *clientv3.Client) *running {
	t.Helper()
	require.NoError(t, cfg.Validate())
	if cli == nil {
		var err error
		cli, err = clientv3.New(clientv3.Config{Endpoints: e.Etcd.Endpoints(), DialTimeout: 2 * time.Second,
			DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, Logger: zap.NewNop()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cli.Close() })
	}
	st := state.New(cli, "")
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close() })
	log := zerolog.New(zerolog.NewTestWriter(t)).With().Str("agent", cfg.ID).Logger().Level(zerolog.InfoLevel)
	a, err := agent.New(cfg, agent.Parts{Store: st, Lease: sess.Lease, Logger: log, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &running{id: cfg.ID, a: a, stop: cancel, done: make(chan error, 1), store: st}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel(errors.New("test over"))
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Errorf("agent %s did not stop", cfg.ID)
		}
	})
	return r
}

// leader waits until one of the agents leads and returns it.
func leader(t testing.TB, agents ...*running) *running {
	t.Helper()
	var got *running
	check.For(t, 15*time.Second, check.Every, func() error {
		for _, a := range agents {
			if a.a.Elector().IsLeader() {
				got = a
				return nil
			}
		}
		return check.That(false, "an active agent")
	})
	return got
}

// masterChanged waits until the master record names another instance.
func masterChanged(t testing.TB, e *hatest.Env, from string, timeout time.Duration) state.MasterRecord {
	t.Helper()
	var rec state.MasterRecord
	check.For(t, timeout, check.Every, func() error {
		rec, _ = e.Master()
		return check.That(rec.Instance != from, "a new master record")
	})
	return rec
}

// replicatesFrom reports whether in runs both threads from master.
func replicatesFrom(e *hatest.Env, in *mysqld.Instance, master string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	db, err := in.Admin(ctx)
	if err != nil {
		return false
	}
	rs, err := mysqld.ReadReplicaStatus(ctx, db)
	return err == nil && rs.Healthy() && net.JoinHostPort(rs.MasterHost, strconv.Itoa(rs.MasterPort)) == master
}

// readOnly reads @@read_only as root (false and an error when unreachable).
func readOnly(in *mysqld.Instance) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	db, err := in.Admin(ctx)
	if err != nil {
		return false, err
	}
	g, err := mysqld.ReadGTIDState(ctx, db)
	return g.ReadOnly, err
}

// failovers returns the failover records of the test cluster.
// logFailovers logs every failover record of the cluster, steps and all,
// when the test fails: what each one saw and decided, for the diagnosis.
// Register it after hatest.Start (cleanups run last first: etcd is still up).
func logFailovers(t testing.TB, e *hatest.Env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		recs, err := e.Store.Failovers(ctx, hatest.DC, hatest.Cluster)
		if err != nil {
			t.Logf("failover records: %v", err)
			return
		}
		for _, r := range recs {
			b, _ := json.Marshal(r)
			t.Logf("failover record: %s", b)
		}
	})
}

func failovers(t testing.TB, e *hatest.Env) []state.FailoverRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := e.Store.Failovers(ctx, hatest.DC, hatest.Cluster)
	require.NoError(t, err)
	return recs
}
