package supervise

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// Quarantine is the mark of an instance taken out of service.
type Quarantine = state.Quarantine

// snapshot is what the loop reads from etcd each cycle.
type snapshot struct {
	masters     map[string]state.MasterRecord // by cluster
	masterRevs  map[string]int64
	killers     []state.KillSwitch
	quarantined map[string]bool // cluster/instance
	intents     []intent
	memories    map[string]state.ClusterMemory // by cluster
	releases    map[string]state.HoldRelease   // by cluster
	rev         int64
}

type intent struct {
	state.SwitchoverIntent
	rev int64
}

// read takes the snapshot in one transaction.
func (s *Supervisor) read(ctx context.Context) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.ReadTimeout)
	defer cancel()
	st := s.o.Store
	prefixes := []string{
		st.Prefix("masters", s.o.DC), st.Prefix("killswitches"),
		st.Prefix("quarantine", s.o.DC), st.Prefix("intents", "switchover", s.o.DC),
		st.Prefix("hamemory", s.o.DC), st.Prefix("holdrelease", s.o.DC),
	}
	ops := make([]clientv3.Op, len(prefixes))
	for i, p := range prefixes {
		ops[i] = clientv3.OpGet(p, clientv3.WithPrefix())
	}
	resp, err := st.Client().Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return snapshot{}, fmt.Errorf("supervise: read state: %w", err)
	}
	sn := snapshot{masters: map[string]state.MasterRecord{}, masterRevs: map[string]int64{},
		quarantined: map[string]bool{}, memories: map[string]state.ClusterMemory{},
		releases: map[string]state.HoldRelease{}, rev: resp.Header.Revision}
	for i, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			var err error
			switch i {
			case 0:
				var m state.MasterRecord
				if err = json.Unmarshal(kv.Value, &m); err == nil {
					sn.masters[m.Cluster], sn.masterRevs[m.Cluster] = m, kv.ModRevision
				}
			case 1:
				var k state.KillSwitch
				if err = json.Unmarshal(kv.Value, &k); err == nil {
					sn.killers = append(sn.killers, k)
				}
			case 2:
				var q Quarantine
				if err = json.Unmarshal(kv.Value, &q); err == nil {
					sn.quarantined[q.Cluster+"/"+q.Instance] = true
				}
			case 3:
				var in state.SwitchoverIntent
				if err = json.Unmarshal(kv.Value, &in); err == nil {
					sn.intents = append(sn.intents, intent{in, kv.ModRevision})
				}
			case 4:
				var m state.ClusterMemory
				if err = json.Unmarshal(kv.Value, &m); err == nil {
					sn.memories[m.Cluster] = m
				}
			case 5:
				var r state.HoldRelease
				if err = json.Unmarshal(kv.Value, &r); err == nil {
					sn.releases[r.Cluster] = r
				}
			}
			if err != nil {
				s.o.Logger.Warn().Err(err).Str("key", strings.TrimPrefix(string(kv.Key), st.Key(""))).Msg("undecodable state")
			}
		}
	}
	return sn, nil
}

func (s *Supervisor) putQuarantine(ctx context.Context, q Quarantine, fence state.Fence) error {
	_, err := state.Put(ctx, s.o.Store, s.o.Store.QuarantineKey(q.DC, q.Cluster, q.Instance), q,
		state.PutOptions{PrevRev: -1, Fence: &fence})
	return err
}
