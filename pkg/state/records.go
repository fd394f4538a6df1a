package state

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Role is an instance's observed replication role.
type Role string

// Roles.
const (
	RoleMaster  Role = "MASTER"
	RoleReplica Role = "REPLICA"
	RoleUnknown Role = "UNKNOWN"
)

// InstanceStatus is one observation of one MySQL instance, published by the
// DC's HA agent on its lease so that stale observations disappear.
type InstanceStatus struct {
	DC             string `json:"dc"`
	Cluster        string `json:"cluster"`
	Name           string `json:"name"`
	Addr           string `json:"addr"`
	Role           Role   `json:"role"`
	Reachable      bool   `json:"reachable"`
	ReadOnly       bool   `json:"read_only"`
	GTIDBinlogPos  string `json:"gtid_binlog_pos"`
	GTIDSlavePos   string `json:"gtid_slave_pos"`
	GTIDCurrentPos string `json:"gtid_current_pos"`
	// GTIDIOPos is what a replica's IO thread has received (relay log).
	GTIDIOPos string `json:"gtid_io_pos,omitempty"`
	IORunning bool   `json:"io_running"`
	// IOState is Slave_IO_Running verbatim ("Yes", "No", "Connecting").
	IOState       string `json:"io_state,omitempty"`
	IOErrno       int    `json:"io_errno,omitempty"`
	SQLErrno      int    `json:"sql_errno,omitempty"`
	SQLRunning    bool   `json:"sql_running"`
	SecondsBehind *int64 `json:"seconds_behind_master,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	// Refused is set when the probe's connection was refused: nothing
	// listens on the port (the process is gone), unlike a probe that timed
	// out (a paused or slow instance, or the network).
	Refused         bool   `json:"refused,omitempty"`
	SemiSyncMaster  bool   `json:"semi_sync_master"`
	SemiSyncClients int    `json:"semi_sync_clients"`
	SourceHost      string `json:"source_host,omitempty"`
	// ServerID is the instance's server_id; SourceServerID the server_id of
	// the master it last connected to (0: never). Replicas are matched to
	// their master by address or by server id, so an instance reached
	// under another address (a proxy, a DNS name) is still recognized.
	ServerID       uint32 `json:"server_id,omitempty"`
	SourceServerID uint32 `json:"source_server_id,omitempty"`
	// SyncBinlog, FlushLogAtTrxCommit and SemiSyncWaitPoint are the
	// instance's @@sync_binlog, @@innodb_flush_log_at_trx_commit and
	// @@rpl_semi_sync_master_wait_point (nil and empty: not observed).
	SyncBinlog          *int      `json:"sync_binlog,omitempty"`
	FlushLogAtTrxCommit *int      `json:"innodb_flush_log_at_trx_commit,omitempty"`
	SemiSyncWaitPoint   string    `json:"semi_sync_wait_point,omitempty"`
	ObservedAt          time.Time `json:"observed_at"`
	ObservedBy          string    `json:"observed_by"`
}

// PutInstanceStatus publishes an observation on the observer's lease.
func (s *Store) PutInstanceStatus(ctx context.Context, st InstanceStatus, lease clientv3.LeaseID) error {
	_, err := Put(ctx, s, s.Key("status", st.DC, st.Cluster, st.Name), st, PutOptions{PrevRev: -1, Lease: lease})
	return err
}

// InstanceStatuses lists observations, of one DC or all when dc is empty.
func (s *Store) InstanceStatuses(ctx context.Context, dc string) ([]InstanceStatus, error) {
	p := s.Prefix("status")
	if dc != "" {
		p = s.Prefix("status", dc)
	}
	recs, _, err := List[InstanceStatus](ctx, s, p)
	return recs, err
}

// MasterRecord names the current master of one (dc, cluster).
type MasterRecord struct {
	DC       string `json:"dc"`
	Cluster  string `json:"cluster"`
	Instance string `json:"instance"`
	Addr     string `json:"addr"`
	// Term increases by one with every change of master.
	Term int64 `json:"term"`
	// FencingRevision is the fencing token under which the record was written.
	FencingRevision int64     `json:"fencing_revision"`
	UpdatedAt       time.Time `json:"updated_at"`
	Reason          string    `json:"reason"`
}

func (s *Store) masterKey(dc, cluster string) string { return s.Key("masters", dc, cluster) }

// Master returns the master record of (dc, cluster) and its revision.
func (s *Store) Master(ctx context.Context, dc, cluster string) (MasterRecord, int64, error) {
	return Get[MasterRecord](ctx, s, s.masterKey(dc, cluster))
}

// Masters lists master records, of one DC or all when dc is empty.
func (s *Store) Masters(ctx context.Context, dc string) ([]MasterRecord, error) {
	p := s.Prefix("masters")
	if dc != "" {
		p = s.Prefix("masters", dc)
	}
	recs, _, err := List[MasterRecord](ctx, s, p)
	return recs, err
}

// PutMaster writes a master record. prevRev is the revision the caller read
// (0 when there was none); fence, when non-nil, must still hold. The record's
// FencingRevision is set from the fence.
func (s *Store) PutMaster(ctx context.Context, rec MasterRecord, prevRev int64, fence *Fence) (int64, error) {
	if fence != nil {
		rec.FencingRevision = fence.Rev
	}
	return Put(ctx, s, s.masterKey(rec.DC, rec.Cluster), rec, PutOptions{PrevRev: prevRev, Fence: fence})
}
