package analysis

import (
	"time"

	"github.com/drplane/drplane/pkg/state"
)

// Instance is one MySQL instance of a cluster as the agent sees it now.
type Instance struct {
	Name, Addr string
	// Priority decides among equally advanced candidates: higher wins.
	Priority int
	// NoMaster marks an instance that is never promoted.
	NoMaster bool
	// Quarantined is set by the agent after it quarantined the instance
	// (errant GTIDs); such an instance only ever yields the Quarantined alert.
	Quarantined bool
	// Status is the latest observation. Reachable=false when the probe
	// failed; the agent keeps the last GTIDBinlogPos it saw for an
	// unreachable master, which candidate selection compares against.
	Status state.InstanceStatus
}

// Cluster is one MySQL cluster of a DC: its master record and its instances.
type Cluster struct {
	DC, Name string
	// Master is the instance name in the etcd master record; "" when there
	// is none.
	Master    string
	Instances []Instance
	// MaxLag: replicas lagging more than this are not candidates and are
	// reported LaggingReplica. Zero or negative disables the lag check.
	MaxLag time.Duration
}

// Code names one failure mode, e.g. DeadMaster.
type Code string

// Analysis codes, in the order of the table (see Problems).
const (
	TwoWritableMasters          Code = "TwoWritableMasters"
	WritableReplica             Code = "WritableReplica"
	DeadMaster                  Code = "DeadMaster"
	DeadMasterAndSomeReplicas   Code = "DeadMasterAndSomeReplicas"
	DeadMasterNoEligibleReplica Code = "DeadMasterNoEligibleReplica"
	UnknownMaster               Code = "UnknownMaster"
	UnreachableMasterNoEvidence Code = "UnreachableMasterNoEvidence"
	UnreachableMasterReplicasOK Code = "UnreachableMasterReplicasOK"
	NoMasterRecord              Code = "NoMasterRecord"
	NoWritableMaster            Code = "NoWritableMaster"
	ErrantGTID                  Code = "ErrantGTID"
	ReplicationBroken           Code = "ReplicationBroken"
	ReplicaWrongSource          Code = "ReplicaWrongSource"
	OrphanInstance              Code = "OrphanInstance"
	ReplicationStopped          Code = "ReplicationStopped"
	SemiSyncNoReplicas          Code = "SemiSyncNoReplicas"
	DeadReplica                 Code = "DeadReplica"
	LaggingReplica              Code = "LaggingReplica"
	Quarantined                 Code = "Quarantined"
)

// Recovery is what the agent does about an analysis.
type Recovery string

// Recoveries.
const (
	// RecoveryNone: healthy, or deliberately nothing.
	RecoveryNone Recovery = "NONE"
	// RecoveryAlert: log, metric and audit only.
	RecoveryAlert Recovery = "ALERT"
	// RecoveryFailover: promote the best candidate (see Candidates).
	RecoveryFailover Recovery = "FAILOVER"
	// RecoveryFence: read_only=1 and kill client connections on the named
	// instance.
	RecoveryFence Recovery = "FENCE"
	// RecoveryAdopt: no master record; record the single writable instance
	// as master.
	RecoveryAdopt Recovery = "ADOPT"
	// RecoveryUnfence: make the recorded master writable again.
	RecoveryUnfence Recovery = "UNFENCE"
	// RecoveryRepoint: point the named replica at the recorded master,
	// MASTER_USE_GTID=slave_pos.
	RecoveryRepoint Recovery = "REPOINT"
	// RecoveryRejoin: make an old master or an unconfigured read-only
	// instance a replica of the recorded master, MASTER_USE_GTID=current_pos.
	RecoveryRejoin Recovery = "REJOIN"
	// RecoveryRestartReplication: START SLAVE on the named replica.
	RecoveryRestartReplication Recovery = "RESTART_REPLICATION"
	// RecoveryQuarantine: stop replication, keep read_only, mark the
	// instance quarantined.
	RecoveryQuarantine Recovery = "QUARANTINE"
)

// action reports whether r changes something (everything but NONE and
// ALERT).
func (r Recovery) action() bool { return r != RecoveryNone && r != RecoveryAlert }

// Problem is one row of the failure table.
type Problem struct {
	Code        Code
	Description string
	// Priority: higher is more urgent.
	Priority int
	// Recovery is the row's recovery. A few rows answer ALERT instead in
	// the cases their description names; Analysis.Recovery is the one to run.
	Recovery Recovery
	// Match returns the names of the affected instances, "" standing for the
	// cluster as a whole; nil when the row does not match. It is the row on
	// its own: Analyze applies the cross-row rules (see the package doc).
	Match func(c Cluster) []string

	eval func(v view) []finding
}

// Analysis is one problem found in one cluster.
type Analysis struct {
	Code     Code
	Instance string
	Priority int
	Recovery Recovery
	// Description is the row's; Detail says what was seen.
	Description, Detail string
}

// finding is one match of one row.
type finding struct {
	instance string
	detail   string
	// recovery overrides the row's when set.
	recovery Recovery
}
