package embedetcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func put(ctx context.Context, cli *clientv3.Client, timeout time.Duration, k, v string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cli.Put(ctx, k, v)
	return err
}

func TestClusterQuorum(t *testing.T) {
	ctx := t.Context()
	began := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := Start(startCtx, Options{Dir: t.TempDir(), Members: 3, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Logf("3-member cluster ready in %v", time.Since(began))
	t.Cleanup(func() { b := time.Now(); c.Close(); t.Logf("close took %v", time.Since(b)) })
	require.Len(t, c.Endpoints(), 3)

	cli, err := c.Client(ctx)
	require.NoError(t, err)

	require.NoError(t, put(ctx, cli, 5*time.Second, "k", "v1"))
	resp, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v1", string(resp.Kvs[0].Value))

	// One member down: two of three still form a quorum.
	began = time.Now()
	require.NoError(t, c.StopMember(0))
	t.Logf("stop member 0 took %v", time.Since(began))
	require.False(t, c.Members()[0].Running())
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		return check.That(put(ctx, cli, time.Second, "k", "v2") == nil, "writes with one member down")
	})
	t.Logf("write ok after %v", time.Since(began))

	// Two down: no quorum, writes fail.
	began = time.Now()
	require.NoError(t, c.StopMember(1))
	t.Logf("stop member 1 took %v", time.Since(began))
	err = put(ctx, cli, 500*time.Millisecond, "k", "v3")
	require.Error(t, err, "a write without quorum must not succeed")

	// Bring one back: quorum again.
	began = time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	require.NoError(t, c.RestartMember(rctx, 1))
	t.Logf("restart member 1 ready in %v", time.Since(began))
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		return check.That(put(ctx, cli, time.Second, "k", "v4") == nil, "writes after quorum is back")
	})
	t.Logf("write ok after %v", time.Since(began))
	began = time.Now()
	require.NoError(t, c.RestartMember(rctx, 0))
	t.Logf("restart member 0 ready in %v", time.Since(began))

	// The member that missed writes catches up.
	m0, err := c.Member(0)
	require.NoError(t, err)
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{m0.ClientURL()}, DialTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = one.Close() })
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		gctx, gcancel := context.WithTimeout(ctx, time.Second)
		defer gcancel()
		r, err := one.Get(gctx, "k", clientv3.WithSerializable())
		if err != nil {
			return err
		}
		return check.That(len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "v4", "len(r.Kvs) == 1 && string(r.Kvs[0].Value) == \"v4\"")
	})
}

func TestClusterNamedSingle(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{Dir: t.TempDir(), Names: []string{"dc-a1"}})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	require.Equal(t, "dc-a1", c.Members()[0].Name())
	cli, err := c.Client(ctx)
	require.NoError(t, err)
	for i := range 10 {
		require.NoError(t, put(ctx, cli, 2*time.Second, fmt.Sprintf("k%d", i), "v"))
	}
	r, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.EqualValues(t, 10, r.Count)
}

func TestOptionsRejected(t *testing.T) {
	_, err := Start(t.Context(), Options{})
	require.ErrorIs(t, err, ErrOptions)
	_, err = Start(t.Context(), Options{Dir: t.TempDir(), Names: []string{"a", "a"}})
	require.ErrorIs(t, err, ErrOptions)
	_, err = StartMember(MemberOptions{Dir: t.TempDir(), Name: "x", Peers: []Peer{{Name: "y"}}})
	require.ErrorIs(t, err, ErrOptions)
}
