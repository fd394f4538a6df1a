package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/router/routertest"
	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// syncBuffer is a bytes.Buffer safe for the program and the test at once.
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

// TestExampleWritesOwnedOrders runs the example against a fake coordinator
// (routertest, with a token) and a real MariaDB cluster as dc-a1's master:
// the orders of shards dc-a1 owns land in that master, the others are
// reported with their owner, and a frozen shard is retried until the
// coordinator unfreezes it.
func TestExampleWritesOwnedOrders(t *testing.T) {
	cl := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 2, Schema: []string{`CREATE TABLE orders (
		id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, note VARCHAR(255),
		updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`}})
	const token = "example-token"
	srv := routertest.Start(t, routertest.Options{Token: token})
	tbl := routertest.HashTable("orders", "main", 64, 7, "dc-a1", "dc-b1")
	routertest.SetMaster(tbl, "dc-a1", cl.Master.Name(), cl.Master.Addr(), 1)
	routertest.SetMaster(tbl, "dc-b1", "dc-b1-db1", "127.0.0.1:1", 1)
	// User 2's shard (24, owned by dc-a1) is frozen when the program starts.
	p, _ := shardmap.PointString(shardmap.Hash, "2")
	frozen := int(p >> 58)
	require.Equal(t, "dc-a1", tbl.Shards[frozen].GetOwnerDc())
	tbl.Shards[frozen].State = drplanev1.ShardState_SHARD_STATE_FROZEN
	srv.Set(tbl)

	dir := t.TempDir()
	require.NoError(t, labfile.Write(filepath.Join(dir, labfile.FileName), &labfile.Lab{
		API: labfile.API{GRPC: srv.Addr(), Token: token},
		DCs: []labfile.DC{
			{Name: "dc-a1", City: "city-a", AppUser: cl.AppUser, AppPassword: cl.AppPassword,
				MySQL: []labfile.Instance{{Name: cl.Master.Name(), Addr: cl.Master.Addr()}}},
			{Name: "dc-b1", City: "city-b"},
		},
		Keyspaces: []labfile.Keyspace{{Name: "orders", Shards: 64, Database: cl.Database, Table: "orders", ShardKey: "user_id"}},
	}))

	var out, errOut syncBuffer
	const n = 20
	code := make(chan int, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		code <- run(ctx, []string{"--lab", dir, "--dc", "dc-a1", "-n", strconv.Itoa(n), "--first-id", "1000"}, &out, &errOut)
	}()
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		return check.That(strings.Contains(out.String(), "retry"), "the frozen shard is retried; stderr: %s", errOut.String())
	})
	tbl.Shards[frozen].State = drplanev1.ShardState_SHARD_STATE_ACTIVE
	tbl.MapRevision = 8
	srv.Set(tbl)
	select {
	case c := <-code:
		require.Equal(t, 0, c, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	case <-ctx.Done():
		t.Fatalf("the example did not finish; stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
	t.Logf("example output:\n%s", out.String())

	// Every order is either written here or reported with its owner.
	local := regexp.MustCompile(`(?m)^user (\d+)\s+shard \d+\s+written locally in dc-a1`).FindAllStringSubmatch(out.String(), -1)
	remote := regexp.MustCompile(`(?m)^user (\d+)\s+shard \d+\s+owned by dc-b1 \(master dc-b1-db1 at 127\.0\.0\.1:1\)`).FindAllStringSubmatch(out.String(), -1)
	assert.Equal(t, n, len(local)+len(remote), "one line per order")
	assert.NotEmpty(t, local)
	assert.NotEmpty(t, remote)
	assert.Regexp(t, `(?m)^user 2\s+retry in .*SHARD_FROZEN`, out.String())
	assert.Regexp(t, `(?m)^user 2\s+shard `+strconv.Itoa(frozen)+`\s+written locally in dc-a1`, out.String(),
		"the frozen shard's order is written once the shard is unfrozen")
	assert.Contains(t, out.String(), strconv.Itoa(n)+" orders: "+strconv.Itoa(len(local))+" written locally in dc-a1, "+strconv.Itoa(len(remote))+" owned by dc-b1")

	// The local ones are in dc-a1's master, exactly those users.
	rows, err := cl.AdminDB(cl.Master).QueryContext(ctx, "SELECT user_id FROM shop.orders ORDER BY user_id")
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	var got []string
	for rows.Next() {
		var u int64
		require.NoError(t, rows.Scan(&u))
		got = append(got, strconv.FormatInt(u, 10))
	}
	require.NoError(t, rows.Err())
	var want []string
	for _, m := range local {
		want = append(want, m[1])
	}
	assert.ElementsMatch(t, want, got)
	for _, u := range got {
		p, _ := shardmap.PointString(shardmap.Hash, u)
		assert.Equal(t, "dc-a1", tbl.Shards[p>>58].GetOwnerDc(), "user %s", u)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dc", "dc-a1"}, "--lab is required"},
		{[]string{"--lab", "x"}, "--dc is required"},
		{[]string{"--lab", "x", "--dc", "dc-a1", "-n", "0"}, "-n must be at least 1"},
	} {
		var out, errOut syncBuffer
		assert.Equal(t, 2, run(context.Background(), tc.args, &out, &errOut), tc.args)
		assert.Contains(t, errOut.String(), tc.want)
	}
	var out, errOut syncBuffer
	assert.Equal(t, 1, run(context.Background(), []string{"--lab", t.TempDir(), "--dc", "dc-a1"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "no lab.json")
}
