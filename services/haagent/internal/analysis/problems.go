package analysis

import (
	"fmt"
	"strings"

	"github.com/drplane/drplane/pkg/state"
)

// Problems returns the failure table, a fresh copy, in priority order (most
// urgent first).
func Problems() []Problem {
	rows := []Problem{
		{Code: TwoWritableMasters, Priority: 1000, Recovery: RecoveryFence, eval: twoWritableMasters,
			Description: "More than one reachable instance is writable. Every writable instance other than the recorded master is fenced; with no master record to tell which one is right, each is only alerted on."},
		{Code: WritableReplica, Priority: 950, Recovery: RecoveryFence, eval: writableReplica,
			Description: "An instance other than the recorded master is writable while the master is not (unreachable or read-only), e.g. an old master that came back writable. It is fenced."},
		{Code: DeadMaster, Priority: 900, Recovery: RecoveryFailover, eval: deadMaster,
			Description: "The master is unreachable, every other instance is reachable and every replica of the master lost it, and there is an eligible candidate. The best candidate is promoted."},
		{Code: DeadMasterAndSomeReplicas, Priority: 890, Recovery: RecoveryFailover, eval: deadMasterAndSomeReplicas,
			Description: "The master and some replicas are unreachable, every reachable replica of the master lost it, and there is an eligible candidate. The best candidate is promoted."},
		{Code: DeadMasterNoEligibleReplica, Priority: 880, Recovery: RecoveryAlert, eval: deadMasterNoEligibleReplica,
			Description: "The master is dead as far as its replicas can tell, but no replica is eligible for promotion (the detail gives each one's reason). Nothing is promoted."},
		{Code: UnknownMaster, Priority: 870, Recovery: RecoveryAlert, eval: unknownMaster,
			Description: "The master record names an instance the cluster does not have."},
		{Code: UnreachableMasterNoEvidence, Priority: 860, Recovery: RecoveryAlert, eval: unreachableMasterNoEvidence,
			Description: "The master is unreachable and no reachable replica of it can confirm it is dead. Nothing is promoted on the agent's view alone."},
		{Code: UnreachableMasterReplicasOK, Priority: 850, Recovery: RecoveryNone, eval: unreachableMasterReplicasOK,
			Description: "The agent cannot reach the master but at least one replica still receives from it: the master is alive and nothing is done (holistic detection)."},
		{Code: NoMasterRecord, Priority: 800, Recovery: RecoveryAdopt, eval: noMasterRecord,
			Description: "There is no master record. A single reachable writable instance is adopted as the master; with none or several, the cluster is only alerted on."},
		{Code: NoWritableMaster, Priority: 750, Recovery: RecoveryUnfence, eval: noWritableMaster,
			Description: "The recorded master is reachable but read-only and no other instance is writable, e.g. a master restarted read-only or a promotion interrupted before the new master became writable. It is made writable."},
		{Code: ErrantGTID, Priority: 700, Recovery: RecoveryQuarantine, eval: errantGTID,
			Description: "An instance other than the master has transactions the master does not have. It is fenced and handed to the repair: a deposed master whose errant transactions provably were never acknowledged has them saved, undone and is rejoined; any other is quarantined: replication stopped, kept read-only, never repointed, rejoined or promoted."},
		{Code: ReplicationBroken, Priority: 650, Recovery: RecoveryAlert, eval: replicationBroken,
			Description: "A replica of the master stopped replicating on an error (SQL error, or an IO thread that gave up on one) that restarting would repeat."},
		{Code: ReplicaWrongSource, Priority: 600, Recovery: RecoveryRepoint, eval: replicaWrongSource,
			Description: "A replica replicates from an instance other than the recorded master. It is pointed at the master (slave_pos)."},
		{Code: OrphanInstance, Priority: 590, Recovery: RecoveryRejoin, eval: orphanInstance,
			Description: "A read-only instance other than the master is not replicating from anywhere, e.g. an old master. It is made a replica of the master (current_pos), after the repair compared its binlog with the master's: an old master holding transactions the master lacks is repaired or quarantined as for ErrantGTID."},
		{Code: ReplicationStopped, Priority: 580, Recovery: RecoveryRestartReplication, eval: replicationStopped,
			Description: "A replica of the master has its IO or SQL thread stopped without an error. Replication is restarted."},
		{Code: SemiSyncNoReplicas, Priority: 500, Recovery: RecoveryAlert, eval: semiSyncNoReplicas,
			Description: "The writable master has semi-sync enabled but no semi-sync replica connected: its commits wait or go asynchronous."},
		{Code: DeadReplica, Priority: 450, Recovery: RecoveryAlert, eval: deadReplica,
			Description: "An instance other than the master is unreachable while the master is reachable."},
		{Code: LaggingReplica, Priority: 400, Recovery: RecoveryAlert, eval: laggingReplica,
			Description: "A replica receiving from the master is further behind than the cluster's maximum lag; meanwhile it is promoted only if it has received more than every replica that does not lag (the promotion then waits for its relay log)."},
		{Code: Quarantined, Priority: 300, Recovery: RecoveryAlert, eval: quarantined,
			Description: "The instance was quarantined (errant GTIDs the repair could not prove unacknowledged; the mark says why) and waits for an operator to re-clone it. It yields no other analysis."},
	}
	for i := range rows {
		eval := rows[i].eval
		rows[i].Match = func(c Cluster) []string { return names(eval(newView(c))) }
	}
	return rows
}

// names returns the findings' instances, nil when there are none.
func names(fs []finding) []string {
	if len(fs) == 0 {
		return nil
	}
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.instance
	}
	return out
}

func list(ins []Instance) string {
	ns := make([]string, len(ins))
	for i, in := range ins {
		ns[i] = in.Name
	}
	return strings.Join(ns, ", ")
}

func twoWritableMasters(v view) []finding {
	w := v.writableMembers()
	if len(w) < 2 {
		return nil
	}
	var out []finding
	for _, in := range w {
		if v.isM(in) {
			continue
		}
		f := finding{instance: in.Name, detail: "writable instances: " + list(w)}
		if !v.hasM {
			f.recovery = RecoveryAlert
			f.detail += "; no master record to tell which one is right"
		}
		out = append(out, f)
	}
	return out
}

func writableReplica(v view) []finding {
	if !v.hasM || writable(v.m) {
		return nil
	}
	why := "unreachable"
	if v.m.Status.Reachable {
		why = "read-only"
	}
	var out []finding
	for _, in := range v.others() {
		if writable(in) {
			out = append(out, finding{instance: in.Name,
				detail: fmt.Sprintf("writable while the recorded master %s is %s", v.m.Name, why)})
		}
	}
	return out
}

// deadVerdict returns the dead-master finding when the master's verdict is
// one of verdicts and an eligible candidate exists (withCandidate) or does
// not (!withCandidate).
func deadVerdict(v view, withCandidate bool, verdicts ...masterVerdict) []finding {
	got, detail := v.unreachableMaster()
	match := false
	for _, w := range verdicts {
		match = match || got == w
	}
	if !match {
		return nil
	}
	ok, excluded := v.candidates()
	if (len(ok) > 0) != withCandidate {
		return nil
	}
	if withCandidate {
		detail += fmt.Sprintf("; best candidate %s at %s", ok[0].Instance.Name, ok[0].Pos)
	} else {
		detail += "; no eligible candidate: " + v.exclusions(excluded)
	}
	return []finding{{instance: v.m.Name, detail: detail}}
}

func deadMaster(v view) []finding { return deadVerdict(v, true, verdictDead) }

func deadMasterAndSomeReplicas(v view) []finding { return deadVerdict(v, true, verdictDeadSome) }

func deadMasterNoEligibleReplica(v view) []finding {
	return deadVerdict(v, false, verdictDead, verdictDeadSome)
}

func unknownMaster(v view) []finding {
	if v.c.Master == "" || v.hasM {
		return nil
	}
	return []finding{{instance: v.c.Master, detail: "the master record names " + v.c.Master + ", which is not an instance of the cluster"}}
}

func verdictFinding(v view, want masterVerdict) []finding {
	got, detail := v.unreachableMaster()
	if got != want {
		return nil
	}
	return []finding{{instance: v.m.Name, detail: detail}}
}

func unreachableMasterNoEvidence(v view) []finding { return verdictFinding(v, verdictNoEvidence) }

func unreachableMasterReplicasOK(v view) []finding { return verdictFinding(v, verdictSeen) }

func noMasterRecord(v view) []finding {
	if v.c.Master != "" {
		return nil
	}
	w := v.writableMembers()
	if len(w) == 1 {
		return []finding{{instance: w[0].Name, detail: "no master record; the only writable instance"}}
	}
	d := "no master record and no writable instance"
	if len(w) > 1 {
		d = "no master record and several writable instances: " + list(w)
	}
	return []finding{{detail: d, recovery: RecoveryAlert}}
}

func noWritableMaster(v view) []finding {
	if !v.masterUp() || !v.m.Status.ReadOnly {
		return nil
	}
	for _, in := range v.c.Instances {
		if !v.isM(in) && writable(in) {
			return nil
		}
	}
	d := "the recorded master is read-only and no other instance is writable"
	if v.m.Status.Role == state.RoleReplica {
		d += "; replication from " + v.m.Status.SourceHost + " is still configured on it"
	}
	return []finding{{instance: v.m.Name, detail: d}}
}

func errantGTID(v view) []finding {
	mpos, known := v.masterPos()
	if !v.masterUp() || !known {
		return nil
	}
	var out []finding
	for _, in := range v.others() {
		if !in.Status.Reachable {
			continue
		}
		e, err := v.errantOf(in, mpos)
		if err != nil || len(e) == 0 {
			continue
		}
		out = append(out, finding{instance: in.Name,
			detail: fmt.Sprintf("errant GTIDs %s (binlog at %s, master at %s)", e, in.Status.GTIDBinlogPos, mpos)})
	}
	return out
}

// replicasOfM returns the reachable replicas of a reachable master for which
// keep holds.
func replicasOfM(v view, keep func(Instance) bool) []Instance {
	if !v.masterUp() {
		return nil
	}
	var out []Instance
	for _, in := range v.others() {
		if in.Status.Reachable && v.replicaOfM(in) && keep(in) {
			out = append(out, in)
		}
	}
	return out
}

func threads(in Instance) string {
	st := in.Status
	d := fmt.Sprintf("IO %q (errno %d), SQL running %t (errno %d)", st.IOState, st.IOErrno, st.SQLRunning, st.SQLErrno)
	if st.LastError != "" {
		d += ": " + st.LastError
	}
	return d
}

func replicationBroken(v view) []finding {
	var out []finding
	for _, in := range replicasOfM(v, func(in Instance) bool { return stopped(in) && broken(in) }) {
		out = append(out, finding{instance: in.Name, detail: threads(in)})
	}
	return out
}

func replicationStopped(v view) []finding {
	var out []finding
	for _, in := range replicasOfM(v, func(in Instance) bool { return stopped(in) && !broken(in) }) {
		out = append(out, finding{instance: in.Name, detail: threads(in)})
	}
	return out
}

func replicaWrongSource(v view) []finding {
	if !v.masterUp() {
		return nil
	}
	var out []finding
	for _, in := range v.others() {
		st := in.Status
		if st.Reachable && st.Role == state.RoleReplica && st.SourceHost != "" && !v.replicaOfM(in) {
			out = append(out, finding{instance: in.Name,
				detail: fmt.Sprintf("replicates from %s, the master %s is at %s", st.SourceHost, v.m.Name, v.m.Addr)})
		}
	}
	return out
}

func orphanInstance(v view) []finding {
	if !v.masterUp() {
		return nil
	}
	var out []finding
	for _, in := range v.others() {
		st := in.Status
		// Role UNKNOWN with an error: the probe read the instance's GTID
		// state but not its replica status (a timeout under load). That
		// is an instance not observed, not one that does not replicate:
		// rejoining a healthy replica on it would restart its
		// replication, and repeated, keep the cluster from settling.
		partial := st.Role == state.RoleUnknown && st.LastError != ""
		if st.Reachable && st.ReadOnly && !partial && (st.Role != state.RoleReplica || st.SourceHost == "") {
			out = append(out, finding{instance: in.Name,
				detail: fmt.Sprintf("read-only, role %s, not replicating; binlog at %s", st.Role, st.GTIDBinlogPos)})
		}
	}
	return out
}

func semiSyncNoReplicas(v view) []finding {
	if !v.hasM || !writable(v.m) || !v.m.Status.SemiSyncMaster || v.m.Status.SemiSyncClients != 0 {
		return nil
	}
	return []finding{{instance: v.m.Name, detail: "semi-sync master enabled with 0 semi-sync clients"}}
}

func deadReplica(v view) []finding {
	if !v.masterUp() {
		return nil
	}
	var out []finding
	for _, in := range v.others() {
		if !in.Status.Reachable {
			d := "unreachable"
			if in.Status.LastError != "" {
				d += ": " + in.Status.LastError
			}
			out = append(out, finding{instance: in.Name, detail: d})
		}
	}
	return out
}

func laggingReplica(v view) []finding {
	if !v.hasM {
		return nil
	}
	var out []finding
	for _, in := range v.others() {
		if in.Status.Reachable && v.replicaOfM(in) && sees(in) && lagging(in, v.c.MaxLag) {
			out = append(out, finding{instance: in.Name,
				detail: fmt.Sprintf("%ds behind, more than %s", *in.Status.SecondsBehind, v.c.MaxLag)})
		}
	}
	return out
}

func quarantined(v view) []finding {
	var out []finding
	for _, in := range v.c.Instances {
		if !in.Quarantined {
			continue
		}
		d := "quarantined; re-clone it, then clear the mark"
		switch {
		case !in.Status.Reachable:
			d += "; unreachable"
		case !in.Status.ReadOnly:
			d += "; WRITABLE: it should be read-only"
		}
		out = append(out, finding{instance: in.Name, detail: d})
	}
	return out
}
