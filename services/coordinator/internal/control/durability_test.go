package control_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/control"
)

func durableInstance(name string, writable bool) *drplanev1.InstanceStatus {
	one := int32(1)
	in := &drplanev1.InstanceStatus{Name: name, Reachable: true, ReadOnly: !writable, SyncBinlog: &one,
		InnodbFlushLogAtTrxCommit: &one, SemiSyncWaitPoint: "AFTER_COMMIT"}
	if writable {
		in.SemiSyncMaster, in.SemiSyncWaitPoint = true, "AFTER_SYNC"
	}
	return in
}

func durableCluster(mod func(m, r *drplanev1.InstanceStatus)) []*drplanev1.ClusterStatus {
	m, r := durableInstance("db1", true), durableInstance("db2", false)
	if mod != nil {
		mod(m, r)
	}
	return []*drplanev1.ClusterStatus{{Name: "main", Instances: []*drplanev1.InstanceStatus{m, r}}}
}

var syncAlways = []state.NATSSync{{DC: "dc-a1", Reporter: "reship-1", Always: true}}

type warned struct{ subject, setting, value string }

func warnings(d *drplanev1.Durability) []warned {
	var out []warned
	for _, w := range d.GetWarnings() {
		out = append(out, warned{w.GetSubject(), w.GetSetting(), w.GetValue()})
	}
	return out
}

func TestDurability(t *testing.T) {
	two, zero := int32(2), int32(0)
	for _, tc := range []struct {
		name  string
		mod   func(m, r *drplanev1.InstanceStatus)
		syncs []state.NATSSync
		want  []warned
		nats  string
	}{
		{name: "durable", syncs: syncAlways, nats: "always"},
		{name: "sync_binlog=0 on a replica", mod: func(_, r *drplanev1.InstanceStatus) { r.SyncBinlog = &zero }, syncs: syncAlways,
			want: []warned{{"db2", "sync_binlog", "0"}}, nats: "always"},
		{name: "redo log every second on the master", mod: func(m, _ *drplanev1.InstanceStatus) { m.InnodbFlushLogAtTrxCommit = &two },
			syncs: syncAlways, want: []warned{{"db1", "innodb_flush_log_at_trx_commit", "2"}}, nats: "always"},
		{name: "master AFTER_COMMIT", mod: func(m, _ *drplanev1.InstanceStatus) { m.SemiSyncWaitPoint = "AFTER_COMMIT" },
			syncs: syncAlways, want: []warned{{"db1", "rpl_semi_sync_master_wait_point", "AFTER_COMMIT"}}, nats: "always"},
		{name: "master without semi-sync", mod: func(m, _ *drplanev1.InstanceStatus) { m.SemiSyncMaster = false },
			syncs: syncAlways, want: []warned{{"db1", "rpl_semi_sync_master_enabled", "OFF"}}, nats: "always"},
		{name: "not observed", mod: func(m, _ *drplanev1.InstanceStatus) { m.SyncBinlog, m.SemiSyncWaitPoint = nil, "" },
			syncs: syncAlways, want: []warned{{"db1", "sync_binlog", ""}, {"db1", "rpl_semi_sync_master_wait_point", ""}}, nats: "always"},
		{name: "an unreachable instance is not judged", mod: func(_, r *drplanev1.InstanceStatus) {
			r.Reachable, r.SyncBinlog = false, nil
		}, syncs: syncAlways, nats: "always"},
		{name: "NATS every second", syncs: []state.NATSSync{{DC: "dc-a1", Reporter: "reship-1", Interval: time.Second}},
			want: []warned{{"nats", "jetstream sync", "1s"}}, nats: "1s"},
		{name: "NATS not reported", want: []warned{{"nats", "jetstream sync", ""}}},
		{name: "NATS unreadable", syncs: []state.NATSSync{{DC: "dc-a1", Reporter: "reship-1", Error: "nats_monitor_url is not configured"}},
			want: []warned{{"nats", "jetstream sync", ""}}},
		{name: "two reporters disagree", syncs: []state.NATSSync{
			{DC: "dc-a1", Reporter: "reship-1", Always: true}, {DC: "dc-a1", Reporter: "reship-2", Interval: 2 * time.Minute},
		}, want: []warned{{"nats", "jetstream sync", "2m0s"}}, nats: "always,2m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := control.Durability(durableCluster(tc.mod), tc.syncs)
			assert.Equal(t, tc.want, warnings(d))
			assert.Equal(t, len(tc.want) == 0, d.GetOk())
			assert.Equal(t, tc.nats, d.GetNatsSync())
			for _, w := range d.GetWarnings() {
				assert.NotEmpty(t, w.GetWant(), "every warning says what is wanted")
				assert.NotEmpty(t, w.GetDetail(), "every warning says what can be lost or why it is not known")
			}
		})
	}
	d := control.Durability(nil, []state.NATSSync{{Reporter: "reship-1", Error: "bus: NATS JetStream sync setting unknown: x"}})
	require.Len(t, d.GetWarnings(), 1)
	assert.Contains(t, d.GetWarnings()[0].GetDetail(), "reship-1: bus: NATS JetStream sync setting unknown")
}
