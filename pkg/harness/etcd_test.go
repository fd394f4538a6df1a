package harness

import (
	"context"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestStartEtcd(t *testing.T) {
	began := time.Now()
	c := StartEtcd(t, 3)
	t.Logf("3-member etcd ready in %v", time.Since(began))
	require.Len(t, c.Endpoints(), 3)
	cli := EtcdClientFor(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/drplane/test", "x")
	require.NoError(t, err)

	// Every member serves the value (serializable reads answer from the member itself).
	for _, ep := range c.Endpoints() {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		require.NoError(t, err)
		check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
			r, err := one.Get(ctx, "/drplane/test", clientv3.WithSerializable())
			if err != nil {
				return err
			}
			return check.That(len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "x", "%s", ep)
		})
		require.NoError(t, one.Close())
	}
}

func TestEtcdClient(t *testing.T) {
	cli := EtcdClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	put, err := cli.Put(ctx, "k", "v")
	require.NoError(t, err)
	r, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, r.Kvs, 1)
	require.Equal(t, put.Header.Revision, r.Kvs[0].ModRevision)
}
