// Package observe polls every MySQL instance of one DC and publishes what it
// sees (reachability, role, read_only, GTID positions, replication threads,
// lag, semi-sync, durability settings) to etcd, where the coordinator and drctl read it.
package observe

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// Options configures an Observer.
type Options struct {
	DC       string
	ID       string
	User     string
	Password string
	// Interval between polls of every instance.
	Interval time.Duration
	// Republish is the longest an unchanged observation goes unpublished.
	Republish time.Duration
	Store     *state.Store
	// Lease returns the lease observations are written on.
	Lease    func() clientv3.LeaseID
	Logger   zerolog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Observer is the DC's instance poller.
type Observer struct {
	o       Options
	pools   *mysqld.Pools
	last    map[string]state.InstanceStatus
	lastPub map[string]time.Time
	polls   *prometheus.CounterVec
	reach   *prometheus.GaugeVec
}

// New returns an observer.
func New(o Options) *Observer {
	if o.Now == nil {
		o.Now = time.Now
	}
	ob := &Observer{
		o: o, pools: probePools(o), last: map[string]state.InstanceStatus{}, lastPub: map[string]time.Time{},
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_polls_total", Help: "Instance polls by outcome.",
		}, []string{"instance", "outcome"}),
		reach: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drplane_haagent_instance_reachable", Help: "1 when the last poll reached the instance.",
		}, []string{"cluster", "instance"}),
	}
	if o.Registry != nil {
		o.Registry.MustRegister(ob.polls, ob.reach)
	}
	return ob
}

// Run polls until ctx ends. It reads the topology once and then follows
// its changes with a watch, reading it again only when the watch breaks.
func (ob *Observer) Run(ctx context.Context) error {
	defer ob.pools.Close()
	t := time.NewTicker(ob.o.Interval)
	defer t.Stop()
	var topo *topology.Topology
	var updates <-chan state.Event[topology.Topology]
	for {
		if updates == nil {
			cur, rev, err := ob.o.Store.Topology(ctx)
			if err != nil {
				ob.o.Logger.Warn().Err(err).Msg("read topology")
			} else {
				topo = &cur
				updates = state.Watch[topology.Topology](ctx, ob.o.Store, ob.o.Store.Key("topology"), false, rev+1)
			}
		}
		if topo != nil {
			ob.pollAll(ctx, *topo)
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-updates:
			switch {
			case !ok:
				updates = nil
			case ev.Deleted:
				topo = nil
			default:
				topo = &ev.Value
			}
		case <-t.C:
		}
	}
}

func (ob *Observer) pollAll(ctx context.Context, topo topology.Topology) {
	ob.PollAll(ctx, topo)
}

// PollAll probes every instance of the DC's clusters in parallel, publishes
// the observations and returns them (in topology order). The observer is
// not safe for concurrent use: call PollAll from one goroutine, and not
// while Run runs.
func (ob *Observer) PollAll(ctx context.Context, topo topology.Topology) []state.InstanceStatus {
	type job struct {
		cluster string
		in      topology.Instance
	}
	var jobs []job
	for _, cl := range topo.ClustersIn(ob.o.DC) {
		for _, in := range cl.Instances {
			jobs = append(jobs, job{cl.Name, in})
		}
	}
	results := make([]state.InstanceStatus, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		db := ob.db(j.in.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, ob.o.Interval)
			defer cancel()
			results[i] = ob.probe(pctx, db, j.cluster, j.in)
		}()
	}
	wg.Wait()
	for _, st := range results {
		ob.publish(ctx, st)
	}
	return results
}

// probePools bounds a probe's connect, reads and writes by the poll
// interval (at least 500 ms), so a hung instance costs one interval.
func probePools(o Options) *mysqld.Pools {
	to := max(o.Interval, 500*time.Millisecond)
	return mysqld.NewPools(mysqld.PoolOptions{
		User: o.User, Password: o.Password, DialTimeout: to, IOTimeout: to, MaxOpen: 2, MaxIdle: 2,
	})
}

func (ob *Observer) db(addr string) *sql.DB { return ob.pools.DB(addr) }

// probe reads one instance. An unreachable instance yields a status with
// Reachable=false and the error. ObservedAt is the time the probe ended.
func (ob *Observer) probe(ctx context.Context, db *sql.DB, cluster string, in topology.Instance) (st state.InstanceStatus) {
	st = state.InstanceStatus{
		DC: ob.o.DC, Cluster: cluster, Name: in.Name, Addr: in.Addr, Role: state.RoleUnknown,
		ObservedBy: ob.o.ID,
	}
	defer func() { st.ObservedAt = ob.o.Now().UTC() }()
	g, err := mysqld.ReadGTIDState(ctx, db)
	if err != nil {
		st.LastError = err.Error()
		st.Refused = errors.Is(err, syscall.ECONNREFUSED)
		ob.polls.WithLabelValues(in.Name, "unreachable").Inc()
		ob.reach.WithLabelValues(cluster, in.Name).Set(0)
		return st
	}
	ob.polls.WithLabelValues(in.Name, "ok").Inc()
	ob.reach.WithLabelValues(cluster, in.Name).Set(1)
	st.Reachable = true
	st.ReadOnly = g.ReadOnly
	st.ServerID = g.ServerID
	st.GTIDBinlogPos, st.GTIDSlavePos, st.GTIDCurrentPos = g.BinlogPos, g.SlavePos, g.CurrentPos
	st.SemiSyncMaster = g.SemiSyncMasterActive
	st.SemiSyncClients = g.SemiSyncMasterClients
	syncBinlog, flushLog := g.Durability.SyncBinlog, g.Durability.FlushLogAtTrxCommit
	st.SyncBinlog, st.FlushLogAtTrxCommit = &syncBinlog, &flushLog
	st.SemiSyncWaitPoint = g.Durability.SemiSyncWaitPoint
	rs, err := mysqld.ReadReplicaStatus(ctx, db)
	if err != nil {
		// Reachable, role UNKNOWN with LastError: the replication side was
		// not observed (the analysis does not take it for an orphan).
		st.LastError = err.Error()
		return st
	}
	switch {
	case rs.Configured:
		st.Role = state.RoleReplica
		st.IORunning, st.SQLRunning = rs.IORunning, rs.SQLRunning
		st.IOState, st.IOErrno, st.SQLErrno = rs.IOState, rs.LastIOErrno, rs.LastSQLErrno
		st.GTIDIOPos = rs.GTIDIOPos
		st.SourceServerID = rs.MasterServerID
		st.SecondsBehind = rs.SecondsBehindMaster
		st.SourceHost = rs.MasterHost
		if rs.MasterPort != 0 {
			st.SourceHost = net.JoinHostPort(rs.MasterHost, strconv.Itoa(rs.MasterPort))
		}
		if rs.LastIOError != "" {
			st.LastError = rs.LastIOError
		}
		if rs.LastSQLError != "" {
			st.LastError = rs.LastSQLError
		}
	case !g.ReadOnly:
		st.Role = state.RoleMaster
	}
	return st
}

// publish writes st when it differs from the last published observation or
// the last one is older than Republish.
func (ob *Observer) publish(ctx context.Context, st state.InstanceStatus) {
	prev, seen := ob.last[st.Name]
	ob.last[st.Name] = st
	cmp := prev
	cmp.ObservedAt = st.ObservedAt
	if seen && reflect.DeepEqual(cmp, st) && ob.o.Now().Sub(ob.lastPub[st.Name]) < ob.o.Republish {
		return
	}
	// Bounded: without etcd quorum a put waits, and observing must go on.
	pctx, cancel := context.WithTimeout(ctx, max(ob.o.Interval, 100*time.Millisecond))
	defer cancel()
	if err := ob.o.Store.PutInstanceStatus(pctx, st, ob.o.Lease()); err != nil {
		ob.o.Logger.Warn().Err(err).Str("instance", st.Name).Msg("publish status")
		return
	}
	ob.lastPub[st.Name] = ob.o.Now()
	if !seen || prev.Reachable != st.Reachable || prev.Role != st.Role || prev.ReadOnly != st.ReadOnly {
		ob.o.Logger.Info().Str("instance", st.Name).Bool("reachable", st.Reachable).Str("role", string(st.Role)).
			Bool("read_only", st.ReadOnly).Msg("instance state")
	}
}
