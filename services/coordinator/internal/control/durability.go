package control

import (
	"slices"
	"strconv"
	"strings"

	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// The settings the durability check wants: with them a write MySQL or NATS
// acknowledged survives an OS crash or power loss of one host, and a
// failover never loses one a client saw.
const (
	wantSyncBinlog     = 1
	wantFlushLog       = 1
	wantWaitPoint      = "AFTER_SYNC"
	wantJetStreamSync  = "always"
	settingSyncBinlog  = "sync_binlog"
	settingFlushLog    = "innodb_flush_log_at_trx_commit"
	settingWaitPoint   = "rpl_semi_sync_master_wait_point"
	settingSemiSync    = "rpl_semi_sync_master_enabled"
	settingJetStream   = "jetstream sync"
	natsSubject        = "nats"
	notObservedWarning = "not observed (an HA agent that does not report it?)"
)

// addDurability sets each DC's durability check from its instances'
// observations (already in resp) and the NATS sync settings its services
// reported.
func addDurability(resp *drplanev1.GetStatusResponse, syncs []state.NATSSync) {
	byDC := map[string][]state.NATSSync{}
	for _, s := range syncs {
		byDC[s.DC] = append(byDC[s.DC], s)
	}
	for _, dc := range resp.GetDcs() {
		dc.Durability = Durability(dc.GetClusters(), byDC[dc.GetName()])
	}
}

// Durability judges one DC. Every reachable instance must flush its binlog
// and redo log at every commit; a writable one must run semi-sync with the
// AFTER_SYNC wait point (a replica's settings for that are set when it is
// promoted). The DC's NATS server must flush JetStream before it
// acknowledges, as reported by at least one service. An unreachable
// instance is not judged: its settings are not known, and the cluster's
// health already says it is unreachable.
func Durability(clusters []*drplanev1.ClusterStatus, syncs []state.NATSSync) *drplanev1.Durability {
	d := &drplanev1.Durability{}
	warn := func(subject, setting, value, want, detail string) {
		d.Warnings = append(d.Warnings, &drplanev1.DurabilityWarning{
			Subject: subject, Setting: setting, Value: value, Want: want, Detail: detail,
		})
	}
	for _, cl := range clusters {
		for _, in := range cl.GetInstances() {
			if !in.GetReachable() {
				continue
			}
			name := in.GetName()
			switch {
			case in.SyncBinlog == nil:
				warn(name, settingSyncBinlog, "", strconv.Itoa(wantSyncBinlog), notObservedWarning)
			case in.GetSyncBinlog() != wantSyncBinlog:
				warn(name, settingSyncBinlog, strconv.Itoa(int(in.GetSyncBinlog())), strconv.Itoa(wantSyncBinlog),
					"the binlog is not flushed at every commit: an OS crash can lose committed transactions from it")
			}
			switch {
			case in.InnodbFlushLogAtTrxCommit == nil:
				warn(name, settingFlushLog, "", strconv.Itoa(wantFlushLog), notObservedWarning)
			case in.GetInnodbFlushLogAtTrxCommit() != wantFlushLog:
				warn(name, settingFlushLog, strconv.Itoa(int(in.GetInnodbFlushLogAtTrxCommit())), strconv.Itoa(wantFlushLog),
					"the redo log is flushed about once a second: an OS crash can lose the last second of commits")
			}
			if in.GetReadOnly() {
				continue
			}
			if !in.GetSemiSyncMaster() {
				warn(name, settingSemiSync, "OFF", "ON",
					"the master acknowledges commits no replica has received: a failover can lose acknowledged writes")
			}
			switch wp := in.GetSemiSyncWaitPoint(); {
			case wp == "":
				warn(name, settingWaitPoint, "", wantWaitPoint, notObservedWarning)
			case !strings.EqualFold(wp, wantWaitPoint):
				warn(name, settingWaitPoint, wp, wantWaitPoint,
					"other sessions can read a commit before a replica has it: a failover can lose what they read")
			}
		}
	}
	natsSync(d, syncs, warn)
	d.Ok = len(d.Warnings) == 0
	return d
}

// natsSync judges the DC's NATS server from its services' reports (one per
// reporting process; they read the same server, so they normally agree).
func natsSync(d *drplanev1.Durability, syncs []state.NATSSync, warn func(subject, setting, value, want, detail string)) {
	if len(syncs) == 0 {
		warn(natsSubject, settingJetStream, "", wantJetStreamSync, "not reported: no reship of the DC publishes it")
		return
	}
	var values []string
	reported := false
	for _, s := range syncs {
		if s.Error != "" {
			warn(natsSubject, settingJetStream, "", wantJetStreamSync, s.Reporter+": "+s.Error)
			continue
		}
		reported = true
		v := wantJetStreamSync
		if !s.Always {
			v = s.Interval.String()
		}
		if !slices.Contains(values, v) {
			values = append(values, v)
		}
	}
	if !reported {
		return
	}
	d.NatsSync = strings.Join(values, ",")
	for _, v := range values {
		if v != wantJetStreamSync {
			warn(natsSubject, settingJetStream, v, wantJetStreamSync,
				"JetStream acknowledges before it flushes: an OS crash of the NATS server's host can lose the messages acknowledged in the last "+v)
		}
	}
}

func int32Ptr(p *int) *int32 {
	if p == nil {
		return nil
	}
	v := int32(*p)
	return &v
}
