package router

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func TestCompileSparseIDsAndMasters(t *testing.T) {
	active := drplanev1.ShardState_SHARD_STATE_ACTIVE
	rt := &drplanev1.RoutingTable{
		Keyspace: "cities", Function: "RANGE", Cluster: "geo", MapRevision: 9,
		Shards: []*drplanev1.Shard{
			// Out of range order and far-apart ids: routed through the map.
			{Id: 1_000_000, Lo: "500", Hi: "0", OwnerDc: "b", BackupDc: "a", State: active, Revision: 9},
			{Id: 7, Lo: "0", Hi: "500", OwnerDc: "a", BackupDc: "b", State: drplanev1.ShardState_SHARD_STATE_MOVING, Revision: 4},
		},
		Masters: []*drplanev1.MasterEndpoint{
			{Dc: "a", Cluster: "geo", Instance: "a-old", Addr: "10.0.0.1:3306", Term: 1},
			{Dc: "a", Cluster: "geo", Instance: "a-new", Addr: "10.0.0.2:3306", Term: 2},
			{Dc: "a", Cluster: "geo", Instance: "a-older", Addr: "10.0.0.0:3306", Term: 0},
			{Dc: "b", Cluster: "other", Instance: "b-wrong", Addr: "10.1.0.9:3306", Term: 5},
			{Dc: "b", Instance: "b-noaddr", Term: 6},
			{Dc: "b", Instance: "b1", Addr: "10.1.0.1:3306", Term: 3}, // cluster defaults to the table's
		},
	}
	tb, err := compile(rt, "a")
	require.NoError(t, err)
	require.Nil(t, tb.dense)

	got, err := tb.route("499")
	require.NoError(t, err)
	assert.Equal(t, Route{Keyspace: "cities", Shard: 7, Owner: "a", Backup: "b", State: shardmap.Moving, Local: true,
		Master:   Master{DC: "a", Cluster: "geo", Instance: "a-new", Addr: "10.0.0.2:3306", Term: 2},
		Revision: 4, MapRevision: 9}, got)
	got, err = tb.route("500")
	require.NoError(t, err)
	assert.Equal(t, 1_000_000, got.Shard)
	assert.False(t, got.Local)
	assert.Equal(t, Master{DC: "b", Cluster: "geo", Instance: "b1", Addr: "10.1.0.1:3306", Term: 3}, got.Master)
	_, err = tb.route("-1")
	require.ErrorIs(t, err, shardmap.ErrBadKey)
}

func TestCompileRejects(t *testing.T) {
	for name, rt := range map[string]*drplanev1.RoutingTable{
		"lo":       {Keyspace: "k", Function: "HASH", Shards: []*drplanev1.Shard{{Lo: "x", Hi: "0", OwnerDc: "a", State: drplanev1.ShardState_SHARD_STATE_ACTIVE}}},
		"hi":       {Keyspace: "k", Function: "HASH", Shards: []*drplanev1.Shard{{Lo: "0", Hi: "18446744073709551616", OwnerDc: "a", State: drplanev1.ShardState_SHARD_STATE_ACTIVE}}},
		"empty":    {Keyspace: "k", Function: "HASH"},
		"nameless": {Function: "HASH", Shards: []*drplanev1.Shard{{Lo: "0", Hi: "0", OwnerDc: "a", State: drplanev1.ShardState_SHARD_STATE_ACTIVE}}},
	} {
		_, err := compile(rt, "a")
		require.ErrorIs(t, err, ErrBadTable, name)
	}
}
