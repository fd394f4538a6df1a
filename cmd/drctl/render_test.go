package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const longError = "error connecting to master 'repl@127.0.0.1:40001' - retry-time: 1  maximum-retries: 86400  message: Can't connect"

// fixtureStatus is a crafted status: dc-a1 with a degraded cluster (master,
// a lagging replica, an unreachable replica) and two services; dc-b1 down
// with a cluster that has no master and no services.
func fixtureStatus() *drplanev1.GetStatusResponse {
	at := timestamppb.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	return &drplanev1.GetStatusResponse{
		GeneratedAt: at,
		Dcs: []*drplanev1.DCStatus{
			{
				Name: "dc-a1", City: "city-a", State: drplanev1.DCState_DC_STATE_ACTIVE,
				Clusters: []*drplanev1.ClusterStatus{{
					Name: "db", Master: "dc-a1-db1", Health: "DEGRADED",
					Instances: []*drplanev1.InstanceStatus{
						{Name: "dc-a1-db1", Addr: "127.0.0.1:40001", Role: drplanev1.Role_ROLE_MASTER, Reachable: true,
							GtidBinlogPos: "0-1-42", SemiSyncMaster: true, SemiSyncClients: 2, ObservedAt: at, ObservedBy: "dc-a1-haagent-1"},
						{Name: "dc-a1-db2", Addr: "127.0.0.1:40002", Role: drplanev1.Role_ROLE_REPLICA, Reachable: true, ReadOnly: true,
							GtidBinlogPos: "0-1-40", IoRunning: true, SqlRunning: true, SecondsBehindMaster: proto.Int64(3),
							SourceHost: "127.0.0.1:40001"},
						{Name: "dc-a1-db3", Addr: "127.0.0.1:40003", Role: drplanev1.Role_ROLE_UNKNOWN,
							GtidBinlogPos: "0-1-38", LastError: "connect:\t" + longError},
					},
				}},
				Services: []*drplanev1.ServiceInstance{
					{Name: "haagent", Id: "dc-a1-haagent-1", Dc: "dc-a1", Addr: "127.0.0.1:41001", Version: "v0.1.0", LogicImplemented: true},
					{Name: "reship", Id: "dc-a1-reship-1", Dc: "dc-a1", Addr: "127.0.0.1:41002", Version: "v0.1.0"},
				},
			},
			{
				Name: "dc-b1", City: "city-b", State: drplanev1.DCState_DC_STATE_DOWN,
				Clusters: []*drplanev1.ClusterStatus{{
					Name: "db", Health: "NO_MASTER",
					Instances: []*drplanev1.InstanceStatus{
						{Name: "dc-b1-db1", Addr: "127.0.0.1:40011", Role: drplanev1.Role_ROLE_REPLICA, Reachable: true, ReadOnly: true,
							GtidBinlogPos: "0-1-42", IoRunning: false, SqlRunning: true, LastError: "io stopped"},
					},
				}},
			},
		},
	}
}

// readTable reads the aligned table that starts at the line whose first field
// is first: each row (up to a line that is not indented like the header) as
// column name → trimmed cell, columns cut at the header's column starts.
func readTable(t *testing.T, out, first string) []map[string]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) == 0 || f[0] != first {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		var starts []int
		var names []string
		for j := indent; j < len(l); {
			k := j
			for k < len(l) && (l[k] != ' ' || (k+1 < len(l) && l[k+1] != ' ')) {
				k++
			}
			starts, names = append(starts, j), append(names, l[j:k])
			for k < len(l) && l[k] == ' ' {
				k++
			}
			j = k
		}
		var rows []map[string]string
		for _, r := range lines[i+1:] {
			if len(r) <= indent || strings.TrimSpace(r[:indent]) != "" || r[indent] == ' ' {
				break
			}
			row := map[string]string{}
			for c, s := range starts {
				end := len(r)
				if c+1 < len(starts) {
					end = min(starts[c+1], len(r))
				}
				row[names[c]] = ""
				if s < len(r) {
					row[names[c]] = strings.TrimSpace(r[s:end])
				}
			}
			rows = append(rows, row)
		}
		return rows
	}
	t.Fatalf("no table starting with %q in:\n%s", first, out)
	return nil
}

func TestRenderStatusTable(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderStatus(&b, fixtureStatus()))
	out := b.String()
	t.Log("\n" + out)

	assert.Contains(t, out, "DC dc-a1 (city city-a) ACTIVE\n")
	assert.Contains(t, out, "DC dc-b1 (city city-b) DOWN\n")
	assert.Contains(t, out, "  cluster db: HEALTH DEGRADED, master dc-a1-db1\n")
	assert.Contains(t, out, "  cluster db: HEALTH NO_MASTER, master none\n")
	assert.Less(t, strings.Index(out, "DC dc-a1"), strings.Index(out, "DC dc-b1"), "DCs keep the response order")

	// The header names every column in order.
	assert.Regexp(t, `(?m)^    CLUSTER +INSTANCE +ADDR +ROLE +RW +REACHABLE +IO/SQL +LAG +GTID +SEMI-SYNC +ERROR$`, out)

	rows := readTable(t, out, "CLUSTER")
	require.Len(t, rows, 3, "dc-a1 has three instances")
	want := []map[string]string{
		{"CLUSTER": "db", "INSTANCE": "dc-a1-db1", "ADDR": "127.0.0.1:40001", "ROLE": "master", "RW": "writable",
			"REACHABLE": "yes", "IO/SQL": "-/-", "LAG": "-", "GTID": "0-1-42", "SEMI-SYNC": "ON 2 clients", "ERROR": ""},
		{"CLUSTER": "db", "INSTANCE": "dc-a1-db2", "ADDR": "127.0.0.1:40002", "ROLE": "replica", "RW": "ro",
			"REACHABLE": "yes", "IO/SQL": "Yes/Yes", "LAG": "3s", "GTID": "0-1-40", "SEMI-SYNC": "-", "ERROR": ""},
		{"CLUSTER": "db", "INSTANCE": "dc-a1-db3", "ADDR": "127.0.0.1:40003", "ROLE": "unknown", "RW": "-",
			"REACHABLE": "no", "IO/SQL": "-/-", "LAG": "-", "GTID": "0-1-38", "SEMI-SYNC": "-"},
	}
	for i, w := range want {
		for col, v := range w {
			assert.Equal(t, v, rows[i][col], "row %d (%s) column %s", i, w["INSTANCE"], col)
		}
	}
	// The long error is cut, with its tab made a space so columns hold.
	e := rows[2]["ERROR"]
	assert.True(t, strings.HasPrefix(e, "connect: error connecting to master"), e)
	assert.True(t, strings.HasSuffix(e, "…"), e)
	assert.LessOrEqual(t, len([]rune(e)), maxErrorWidth)
	assert.Greater(t, len([]rune(e)), maxErrorWidth-5)
	assert.NotContains(t, out, "Can't connect")

	svcs := readTable(t, out, "SERVICE")
	require.Len(t, svcs, 2)
	assert.Equal(t, map[string]string{"SERVICE": "haagent", "ID": "dc-a1-haagent-1", "HEALTH ADDR": "127.0.0.1:41001", "VERSION": "v0.1.0", "NOTE": ""}, svcs[0])
	assert.Equal(t, map[string]string{"SERVICE": "reship", "ID": "dc-a1-reship-1", "HEALTH ADDR": "127.0.0.1:41002", "VERSION": "v0.1.0", "NOTE": "logic: not implemented yet"}, svcs[1])

	// dc-b1: a stopped IO thread shows, and no services.
	b1 := out[strings.Index(out, "DC dc-b1"):]
	rowsB := readTable(t, b1, "CLUSTER")
	require.Len(t, rowsB, 1)
	assert.Equal(t, "No/Yes", rowsB[0]["IO/SQL"])
	assert.Equal(t, "io stopped", rowsB[0]["ERROR"])
	assert.Contains(t, b1, "  no services registered\n")
}

func TestRenderDurability(t *testing.T) {
	st := fixtureStatus()
	st.Dcs[0].Durability = &drplanev1.Durability{Ok: true, NatsSync: "always"}
	st.Dcs[1].Durability = &drplanev1.Durability{NatsSync: "1s", Warnings: []*drplanev1.DurabilityWarning{
		{Subject: "dc-b1-db1", Setting: "sync_binlog", Value: "0", Want: "1", Detail: "the binlog is not flushed"},
		{Subject: "nats", Setting: "jetstream sync", Want: "always", Detail: "not reported"},
	}}
	var b bytes.Buffer
	require.NoError(t, renderStatus(&b, st))
	out := b.String()
	assert.Contains(t, out, "DC dc-a1 (city city-a) ACTIVE\n  durability: OK (MySQL sync_binlog=1, innodb_flush_log_at_trx_commit=1, semi-sync AFTER_SYNC; NATS sync always)\n")
	assert.Contains(t, out, "DC dc-b1 (city city-b) DOWN\n  durability: WARNING, 2 setting(s) weaker than wanted or not known\n"+
		"    dc-b1-db1: sync_binlog=0, want 1: the binlog is not flushed\n"+
		"    nats: jetstream sync=?, want always: not reported\n")
}

func TestRenderStatusEdgeCases(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderStatus(&b, &drplanev1.GetStatusResponse{}))
	assert.Equal(t, "no DCs\n", b.String())

	b.Reset()
	require.NoError(t, renderStatus(&b, &drplanev1.GetStatusResponse{Dcs: []*drplanev1.DCStatus{
		{Name: "dc-x", Clusters: []*drplanev1.ClusterStatus{{Name: "db"}}},
		{Name: "dc-y", State: drplanev1.DCState_DC_STATE_EVACUATED},
	}}))
	assert.Equal(t, `DC dc-x (city -) UNSPECIFIED
  cluster db: HEALTH -, master none
    no instances observed
  no services registered

DC dc-y (city -) EVACUATED
  no MySQL clusters
  no services registered
`, b.String())
}

func TestRenderCells(t *testing.T) {
	tests := []struct {
		name string
		in   *drplanev1.InstanceStatus
		semi string
	}{
		{"semi-sync off", &drplanev1.InstanceStatus{Role: drplanev1.Role_ROLE_MASTER}, "OFF"},
		{"one client", &drplanev1.InstanceStatus{Role: drplanev1.Role_ROLE_MASTER, SemiSyncMaster: true, SemiSyncClients: 1}, "ON 1 client"},
		{"no clients", &drplanev1.InstanceStatus{Role: drplanev1.Role_ROLE_MASTER, SemiSyncMaster: true}, "ON 0 clients"},
		{"replica", &drplanev1.InstanceStatus{Role: drplanev1.Role_ROLE_REPLICA, SemiSyncMaster: true}, "-"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.semi, semiSync(tt.in), tt.name)
	}
	assert.Equal(t, "0s", lag(&drplanev1.InstanceStatus{SecondsBehindMaster: proto.Int64(0)}), "zero lag is not absent lag")
	assert.Equal(t, "abc", truncate("abc", 3))
	assert.Equal(t, "ab…", truncate("abcd", 3))
	assert.Equal(t, "a…", truncate("a bcd", 3), "no blank before the ellipsis")
	assert.Equal(t, "a b c", cell(" a\tb\nc\r\n"))
}

func TestRenderJSON(t *testing.T) {
	var b bytes.Buffer
	want := fixtureStatus()
	require.NoError(t, renderJSON(&b, want))
	out := b.String()

	var raw map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &raw), "valid JSON")
	assert.Contains(t, raw, "generated_at", "proto field names")
	assert.True(t, strings.HasPrefix(out, "{\n  \""), "indented: %q", out[:min(20, len(out))])
	assert.True(t, strings.HasSuffix(out, "}\n"))
	assert.Contains(t, out, `"seconds_behind_master"`)
	assert.Contains(t, out, `"logic_implemented"`, "false fields are emitted too")
	assert.Contains(t, out, "\n      \"state\": \"DC_STATE_ACTIVE\",\n", "stable spacing: one blank after the colon")

	got := &drplanev1.GetStatusResponse{}
	require.NoError(t, protojson.Unmarshal(b.Bytes(), got))
	assert.True(t, proto.Equal(want, got), "JSON round-trips to the same message")
}

func TestRenderStatusFailoverHold(t *testing.T) {
	st := fixtureStatus()
	until := time.Date(2026, 1, 2, 3, 14, 0, 0, time.UTC)
	st.GetDcs()[0].GetClusters()[0].FailoverHold = &drplanev1.FailoverHold{Reason: "unsettled",
		Detail: "the master promoted 3s ago failed", Until: timestamppb.New(until)}
	var b bytes.Buffer
	require.NoError(t, renderStatus(&b, st))
	assert.Contains(t, b.String(), "  cluster db: HEALTH DEGRADED, master dc-a1-db1\n    failover held: unsettled, until 2026-01-02T03:14:00Z (the master promoted 3s ago failed)\n")
	assert.Equal(t, 1, strings.Count(b.String(), "failover held"), "only the held cluster")
}

func TestRenderStatusQuarantine(t *testing.T) {
	st := fixtureStatus()
	in := st.GetDcs()[0].GetClusters()[0].GetInstances()[1]
	in.Quarantine = "errant GTIDs 0-1-57: not repaired: repair is off (repair.mode \"off\")"
	var b bytes.Buffer
	require.NoError(t, renderStatus(&b, st))
	assert.Contains(t, b.String(), "  cluster db: HEALTH DEGRADED, master dc-a1-db1\n    quarantined "+in.GetName()+
		": errant GTIDs 0-1-57: not repaired: repair is off (repair.mode \"off\")\n")
	assert.Equal(t, 1, strings.Count(b.String(), "quarantined"), "only the quarantined instance")
}
