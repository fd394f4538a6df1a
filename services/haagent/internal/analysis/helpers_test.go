package analysis_test

import (
	"time"

	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
)

// Crafted topologies: instance name n listens on n:3306.

type opt func(*analysis.Instance)

func addr(name string) string { return name + ":3306" }

func ptr(v int64) *int64 { return &v }

func build(in analysis.Instance, opts []opt) analysis.Instance {
	for _, o := range opts {
		o(&in)
	}
	return in
}

// master is a healthy writable semi-sync master at pos with two semi-sync
// clients.
func master(name, pos string, opts ...opt) analysis.Instance {
	return build(analysis.Instance{Name: name, Addr: addr(name), Status: state.InstanceStatus{
		Name: name, Addr: addr(name), Role: state.RoleMaster, Reachable: true,
		GTIDBinlogPos: pos, GTIDCurrentPos: pos, SemiSyncMaster: true, SemiSyncClients: 2,
	}}, opts)
}

// replica is a healthy read-only replica of src that has received and applied
// pos.
func replica(name, src, pos string, opts ...opt) analysis.Instance {
	return build(analysis.Instance{Name: name, Addr: addr(name), Status: state.InstanceStatus{
		Name: name, Addr: addr(name), Role: state.RoleReplica, Reachable: true, ReadOnly: true,
		GTIDBinlogPos: pos, GTIDCurrentPos: pos, GTIDSlavePos: pos, GTIDIOPos: pos,
		IORunning: true, IOState: "Yes", SQLRunning: true, SecondsBehind: ptr(0), SourceHost: addr(src),
	}}, opts)
}

// orphan is a reachable read-only instance with no replication configured.
func orphan(name, pos string, opts ...opt) analysis.Instance {
	return build(analysis.Instance{Name: name, Addr: addr(name), Status: state.InstanceStatus{
		Name: name, Addr: addr(name), Role: state.RoleUnknown, Reachable: true, ReadOnly: true,
		GTIDBinlogPos: pos, GTIDCurrentPos: pos,
	}}, opts)
}

// down: the probe failed; only the last known binlog position is kept.
func down(in *analysis.Instance) {
	in.Status = state.InstanceStatus{Name: in.Name, Addr: in.Addr, Role: state.RoleUnknown,
		GTIDBinlogPos: in.Status.GTIDBinlogPos, LastError: "dial tcp: connection refused"}
}

// lost: the IO thread is in state s (not "Yes") and Seconds_Behind_Master is
// NULL.
func lost(s string) opt {
	return func(in *analysis.Instance) {
		in.Status.IOState, in.Status.IORunning, in.Status.SecondsBehind = s, false, nil
		if s == "Connecting" {
			in.Status.IOErrno = 2003
		}
	}
}

func readOnly(in *analysis.Instance) {
	in.Status.ReadOnly = true
	if in.Status.Role == state.RoleMaster {
		in.Status.Role = state.RoleUnknown
	}
}

func writableOpt(in *analysis.Instance) { in.Status.ReadOnly = false }

func sqlErr(n int) opt {
	return func(in *analysis.Instance) {
		in.Status.SQLRunning, in.Status.SQLErrno, in.Status.SecondsBehind = false, n, nil
		in.Status.LastError = "Error executing row event"
	}
}

func ioErr(n int) opt {
	return func(in *analysis.Instance) {
		in.Status.IOState, in.Status.IORunning, in.Status.IOErrno, in.Status.SecondsBehind = "No", false, n, nil
		in.Status.LastError = "Got fatal error from master when reading data from binary log"
	}
}

func sqlStopped(in *analysis.Instance) { in.Status.SQLRunning, in.Status.SecondsBehind = false, nil }

func lag(sec int64) opt { return func(in *analysis.Instance) { in.Status.SecondsBehind = ptr(sec) } }

func noMaster(in *analysis.Instance) { in.NoMaster = true }

func quarantine(in *analysis.Instance) { in.Quarantined = true }

func prio(p int) opt { return func(in *analysis.Instance) { in.Priority = p } }

// received sets what the IO thread has received.
func received(pos string) opt { return func(in *analysis.Instance) { in.Status.GTIDIOPos = pos } }

// applied sets the applied (current and binlog) positions.
func applied(pos string) opt {
	return func(in *analysis.Instance) { in.Status.GTIDBinlogPos, in.Status.GTIDCurrentPos = pos, pos }
}

func serverID(id uint32) opt { return func(in *analysis.Instance) { in.Status.ServerID = id } }

func source(src string) opt { return func(in *analysis.Instance) { in.Status.SourceHost = addr(src) } }

func semiClients(n int) opt { return func(in *analysis.Instance) { in.Status.SemiSyncClients = n } }

func cluster(masterName string, ins ...analysis.Instance) analysis.Cluster {
	return analysis.Cluster{DC: "dc-a1", Name: "c1", Master: masterName, Instances: ins, MaxLag: 30 * time.Second}
}

// healthy is m1 with replicas r1 and r2, all at 0-1-100.
func healthy() analysis.Cluster {
	return cluster("m1", master("m1", "0-1-100"), replica("r1", "m1", "0-1-100"), replica("r2", "m1", "0-1-100"))
}

// deadMaster is healthy() after m1 died: both replicas lost it.
func deadMaster() analysis.Cluster {
	return with(with(with(healthy(), "m1", down), "r1", lost("Connecting")), "r2", lost("Connecting"))
}

// with returns c with the named instance changed by opts.
func with(c analysis.Cluster, name string, opts ...opt) analysis.Cluster {
	ins := make([]analysis.Instance, len(c.Instances))
	copy(ins, c.Instances)
	for i := range ins {
		if ins[i].Name == name {
			ins[i] = build(ins[i], opts)
		}
	}
	c.Instances = ins
	return c
}

// plus returns c with more instances.
func plus(c analysis.Cluster, more ...analysis.Instance) analysis.Cluster {
	c.Instances = append(append([]analysis.Instance(nil), c.Instances...), more...)
	return c
}
