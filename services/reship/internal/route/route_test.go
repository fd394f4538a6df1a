package route

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/reship/internal/capture"
)

func TestKeyBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    *drplanev1.Value
		want string
		ok   bool
	}{
		{"int", &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 42}}, "42", true},
		{"negative", &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: -7}}, "-7", true},
		{"uint", &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 18446744073709551615}}, "18446744073709551615", true},
		{"text", &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: "user-1"}}, "user-1", true},
		{"raw", &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte{0, 1}}}, "\x00\x01", true},
		{"null", &drplanev1.Value{Kind: &drplanev1.Value_Null{Null: true}}, "", false},
		{"float", &drplanev1.Value{Kind: &drplanev1.Value_Float{Float: 1.5}}, "", false},
		{"nil", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := KeyBytes(tc.v)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, string(got))
			}
		})
	}
	// The decimal text of 42 lands where pkg/shardmap's reference says.
	b, _ := KeyBytes(&drplanev1.Value{Kind: &drplanev1.Value_Int{Int: 42}})
	require.Equal(t, uint64(0x6de6f5d076d742b9), shardmap.HashKey(b))
}

func TestRequestID(t *testing.T) {
	require.Equal(t, "1-101-42/7", RequestID("1-101-42", "orders", 7, false))
	require.Equal(t, "1-101-42/orders/7", RequestID("1-101-42", "orders", 7, true))
}

func col(name string, v int64) *drplanev1.Column {
	return &drplanev1.Column{Name: name, Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: v}}}
}

func row(table string, op drplanev1.RowOp, id, user int64) capture.Row {
	img := []*drplanev1.Column{col("id", id), col("user_id", user)}
	r := capture.Row{Schema: "shop", Table: table, Op: op, Key: img[:1]}
	if op == drplanev1.RowOp_ROW_OP_DELETE {
		r.Before = img
	} else {
		r.After = img
	}
	return r
}

func TestSplit(t *testing.T) {
	st := state.New(harness.EtcdClient(t), "")
	orders := topology.Keyspace{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", Tables: []string{"items"}, ShardKey: "user_id", Shards: 64}
	users := topology.Keyspace{Name: "users", Cluster: "main", Database: "shop", Table: "users", ShardKey: "user_id", Shards: 64}
	other := topology.Keyspace{Name: "other", Cluster: "second", Database: "shop", Table: "other", ShardKey: "k", Shards: 4}
	topo := topology.Topology{
		Cities: []topology.City{{Name: "c1"}, {Name: "c2"}},
		DCs:    []topology.DC{{Name: "dc1", City: "c1"}, {Name: "dc2", City: "c2"}, {Name: "dc3", City: "c2"}},
		Clusters: []topology.Cluster{
			{Name: "main", DC: "dc1", Instances: []topology.Instance{{Name: "a", Addr: "127.0.0.1:1"}}},
			{Name: "main", DC: "dc2", Instances: []topology.Instance{{Name: "b", Addr: "127.0.0.1:2"}}},
			{Name: "main", DC: "dc3", Instances: []topology.Instance{{Name: "c", Addr: "127.0.0.1:3"}}},
			{Name: "second", DC: "dc1", Instances: []topology.Instance{{Name: "d", Addr: "127.0.0.1:4"}}},
			{Name: "second", DC: "dc2", Instances: []topology.Instance{{Name: "e", Addr: "127.0.0.1:5"}}},
			{Name: "second", DC: "dc3", Instances: []topology.Instance{{Name: "f", Addr: "127.0.0.1:6"}}},
		},
		Keyspaces: []topology.Keyspace{orders, users, other},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := st.PutTopology(ctx, topo, -1)
	require.NoError(t, err)
	_, err = shardmap.Save(ctx, st, shardmap.New(orders, topo), 0, nil, topo)
	require.NoError(t, err)

	r := New(Options{Store: st, DC: "dc1", Cluster: "main", Logger: zerolog.Nop()})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	<-r.Ready()

	require.True(t, r.Wanted("shop", "orders"))
	require.True(t, r.Wanted("shop", "users"))
	require.True(t, r.Wanted("shop", "items"), "one of orders' more tables")
	require.False(t, r.Wanted("shop", "other"), "keyspace of another cluster")
	require.False(t, r.Wanted("shop", "notes"))
	peers, _ := r.Peers()
	require.Equal(t, []string{"dc2", "dc3"}, peers)

	// One transaction, one keyspace: user 42 is in shard 27 of the default 64-shard map.
	commit := time.Unix(1700000000, 0)
	txn := &capture.Txn{GTID: "0-1-5", Position: "0-1-5", CommitTime: commit, CapturedAt: commit.Add(time.Second), Rows: []capture.Row{
		row("orders", drplanev1.RowOp_ROW_OP_INSERT, 1, 42),
		row("orders", drplanev1.RowOp_ROW_OP_DELETE, 2, 42),
		row("items", drplanev1.RowOp_ROW_OP_INSERT, 7, 42),
		row("notes", drplanev1.RowOp_ROW_OP_INSERT, 3, 42),
		{Schema: "shop", Table: "orders", Op: drplanev1.RowOp_ROW_OP_INSERT, After: []*drplanev1.Column{col("id", 4)}},
	}}
	res, err := r.Split(ctx, txn)
	require.NoError(t, err)
	require.Equal(t, 1, res.Unmapped)
	require.Equal(t, 1, res.BadKey)
	require.Len(t, res.Events, 1)
	ev := res.Events[0]
	require.Equal(t, int32(27), ev.Shard)
	require.Equal(t, "0-1-5/27", ev.RequestId)
	require.Equal(t, "dc1", ev.OriginDc)
	require.Equal(t, "orders", ev.Keyspace)
	require.Len(t, ev.Rows, 3, "the keyspace's tables share one event per shard")
	require.Equal(t, commit.Unix(), ev.CommitTime.AsTime().Unix())

	// The users keyspace has no shard map yet: Split waits for it.
	txn2 := &capture.Txn{GTID: "0-1-6", Position: "0-1-6", Rows: []capture.Row{
		row("orders", drplanev1.RowOp_ROW_OP_INSERT, 5, 42),
		row("users", drplanev1.RowOp_ROW_OP_UPDATE, 6, 42),
	}}
	got := make(chan Result, 1)
	go func() {
		res, err := r.Split(ctx, txn2)
		if err == nil {
			got <- res
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("Split did not wait for the users shard map")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = shardmap.Save(ctx, st, shardmap.New(users, topo), 0, nil, topo)
	require.NoError(t, err)
	res2, ok := <-got
	require.True(t, ok)
	require.Len(t, res2.Events, 2)
	require.Equal(t, "0-1-6/orders/27", res2.Events[0].RequestId, "several keyspaces: the keyspace is in the id")
	require.Equal(t, "0-1-6/users/27", res2.Events[1].RequestId)
}
