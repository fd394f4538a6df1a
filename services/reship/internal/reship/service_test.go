package reship

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/daemon"
)

// get returns the status and body of an HTTP GET.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServiceRuns runs the reship binary's main in process against real
// parts: it becomes ready, ships a row, serves its metrics and stops
// cleanly.
func TestServiceRuns(t *testing.T) {
	b := startBed(t, 1)
	t.Setenv("DRPLANE_MYSQL_PASSWORD", b.db.Users.ReplPassword)
	args := []string{
		"--dc", testDC, "--id", "reship-test", "--etcd", strings.Join(b.etcd.Endpoints(), ","),
		"--nats", b.mesh.URL(testDC), "--cluster", testCluster, "--mysql-user", b.db.Users.ReplUser,
		"--start", "earliest", "--log-level", "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	logs := zerolog.NewTestWriter(t)
	go func() { done <- daemon.MainContext(ctx, Spec(DefaultConfig()), args, io.Discard, logs) }()

	var health string
	check.For(t, waitLong, 20*time.Millisecond, func() error {
		recs, err := b.store.Services(context.Background(), testDC)
		if err != nil || len(recs) == 0 {
			return check.That(false, "reship never registered")
		}
		require.True(t, recs[0].LogicImplemented)
		health = recs[0].HealthAddr
		return nil
	})
	check.For(t, waitLong, 20*time.Millisecond, func() error {
		code, _ := get("http://" + health + "/readyz")
		return check.That(code == http.StatusOK, "reship never ready")
	})

	exec(t, b.db.AppDB(b.db.Master), "INSERT INTO orders (id, user_id, amount_cents) VALUES (1, 42, 100)")
	b.waitCaughtUp(b.db.Master)
	msgs := b.readOut()
	require.Len(t, msgs, 1)
	require.Equal(t, b.shardOf(42), msgs[0].ev.Shard)
	_, metrics := get("http://" + health + "/metrics")
	require.Contains(t, metrics, "drplane_reship_published_total{result=\"stored\"} 1")
	require.Contains(t, metrics, "drplane_reship_skipped_transactions_total{reason=\"ddl\"}", "earliest: the schema was read and skipped")

	cancel()
	select {
	case code := <-done:
		require.Equal(t, daemon.ExitOK, code)
	case <-time.After(waitLong):
		t.Fatal("reship did not stop")
	}
}
