package repair

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// Instances is what a Repairer needs of the agent's instance operations
// (failover.Ops): fencing an instance out of service, and making it a
// replica.
type Instances interface {
	// Quarantine fences addr (read-only, application sessions killed,
	// master-side semi-sync off) and stops its replication.
	Quarantine(ctx context.Context, addr string) error
	// Replicate makes addr a read-only semi-sync replica of master.
	Replicate(ctx context.Context, addr, master string, mode mysqld.GTIDMode) error
}

// Options configure a Repairer.
type Options struct {
	DC, AgentID string
	Mode        Mode
	// Dir receives the row images of the discarded transactions, one file
	// per repair; created when missing.
	Dir string
	// Binlog and Client are the mariadb-binlog and mariadb programs
	// (default: found on PATH).
	Binlog, Client string
	// User and Password are the agent's account. Besides what the agent
	// needs anyway it must be allowed to read binlogs (REPLICATION SLAVE)
	// and to replay them (BINLOG REPLAY or SUPER).
	User, Password string
	Ops            Instances
	Store          *state.Store
	// Timeout bounds one repair (default 30s); RetryAfter is how long an
	// instance whose repair failed is left alone (default 5s).
	Timeout, RetryAfter time.Duration
	// Margin allows for the clocks of the agent and the instance (default
	// 2s; see Evidence).
	Margin   time.Duration
	Logger   zerolog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Repairer repairs deposed masters, one repair per instance at a time.
type Repairer struct {
	o     Options
	tools tools
	m     *prometheus.CounterVec

	mu      sync.Mutex
	running map[string]bool      // cluster/instance
	failed  map[string]time.Time // cluster/instance → retry not before
	pools   *mysqld.Pools
}

// New returns a Repairer.
func New(o Options) *Repairer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 30*time.Second)
	def(&o.RetryAfter, 5*time.Second)
	def(&o.Margin, 2*time.Second)
	if o.Binlog == "" {
		o.Binlog = "mariadb-binlog"
	}
	if o.Client == "" {
		o.Client = "mariadb"
	}
	r := &Repairer{o: o, tools: tools{binlog: o.Binlog, client: o.Client, user: o.User, password: o.Password},
		running: map[string]bool{}, failed: map[string]time.Time{},
		pools: mysqld.NewPools(mysqld.PoolOptions{
			User: o.User, Password: o.Password, DialTimeout: 2 * time.Second, MaxOpen: 2, MaxIdle: 1,
		}),
		m: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drplane_haagent_repairs_total",
			Help: "Repairs of deposed or orphaned instances by outcome: rejoined (nothing to undo), rewound (errant transactions saved and undone, then rejoined), refused (quarantined), failed.",
		}, []string{"cluster", "outcome"})}
	if o.Registry != nil {
		o.Registry.MustRegister(r.m)
	}
	return r
}

// Close closes the connection pools.
func (r *Repairer) Close() { r.pools.Close() }

// Claim reserves cluster/instance for one repair: false while one runs or
// while a failed one waits out RetryAfter. Release ends the claim.
func (r *Repairer) Claim(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[key] || r.o.Now().Before(r.failed[key]) {
		return false
	}
	r.running[key] = true
	return true
}

// Busy reports whether a repair of cluster/instance runs.
func (r *Repairer) Busy(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[key]
}

// Release ends a claim; failed delays the next one by RetryAfter.
func (r *Repairer) Release(key string, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, key)
	if failed {
		r.failed[key] = r.o.Now().Add(r.o.RetryAfter)
	} else {
		delete(r.failed, key)
	}
}

// Job is one instance to bring back under the master.
type Job struct {
	Cluster  topology.Cluster
	Instance topology.Instance
	Master   state.MasterRecord
	Fence    state.Fence
}

// Outcome is how a repair ended.
type Outcome string

// Outcomes.
const (
	// Rejoined: nothing errant; the instance replicates from the master.
	Rejoined Outcome = "rejoined"
	// Rewound: errant transactions saved, undone, and the instance rejoined.
	Rewound Outcome = "rewound"
	// Refused: the instance is fenced and stopped and must be quarantined
	// (Record.Reason).
	Refused Outcome = "refused"
)

// Result is the end of a repair that did not fail.
type Result struct {
	Outcome Outcome
	// Record is what was stored in etcd (zero for Rejoined).
	Record state.RepairRecord
}

// Repair fences the job's instance and brings it back as a replica of the
// master: at once when it has nothing the master lacks, after saving and
// undoing its errant transactions when Judge finds that safe. Refused
// leaves it fenced with replication stopped, for the caller to quarantine.
// An error means a step failed; the instance is left fenced.
func (r *Repairer) Repair(ctx context.Context, job Job) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	res, err := r.repair(ctx, job)
	outcome := string(res.Outcome)
	if err != nil {
		outcome = "failed"
	}
	r.m.WithLabelValues(job.Cluster.Name, outcome).Inc()
	return res, err
}

func (r *Repairer) repair(ctx context.Context, job Job) (Result, error) {
	addr, master := job.Instance.Addr, job.Master.Addr
	if err := r.o.Ops.Quarantine(ctx, addr); err != nil {
		return Result{}, fmt.Errorf("repair: fence %s: %w", job.Instance.Name, err)
	}
	fencedAt := r.o.Now()
	own, err := r.server(ctx, addr)
	if err != nil {
		return Result{}, err
	}
	mst, err := r.binlogState(ctx, master)
	if err != nil {
		return Result{}, fmt.Errorf("repair: master %s: %w", job.Master.Instance, err)
	}
	errant, resume := Split(own.state, mst)
	if len(errant) == 0 {
		if err := r.o.Ops.Replicate(ctx, addr, master, mysqld.CurrentPos); err != nil {
			return Result{}, fmt.Errorf("repair: rejoin %s: %w", job.Instance.Name, err)
		}
		return Result{Outcome: Rejoined}, nil
	}
	rec := state.RepairRecord{DC: r.o.DC, Cluster: job.Cluster.Name, Instance: job.Instance.Name,
		Master: job.Master.Instance, Errant: Ranges(resume, errant), Resume: resume.String(), Agent: r.o.AgentID}
	ev, err := r.evidence(ctx, job, own, errant, resume)
	if err != nil {
		return Result{}, err
	}
	ev.Now = fencedAt
	if ev.Deposed != nil {
		rec.FailoverID = ev.Deposed.ID
	}
	refused := func(err error) (Result, error) {
		rec.State, rec.Reason = state.RepairRefused, strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ")
		return Result{Outcome: Refused, Record: rec}, r.put(ctx, rec, job.Fence)
	}
	if err := Precheck(ev); err != nil {
		return refused(err)
	}
	if err := r.tools.check(); err != nil {
		return refused(fmt.Errorf("%w: %w", ErrRefused, err))
	}
	images, err := r.tools.read(ctx, addr, resume, own.firstLog, "-vv")
	if err != nil {
		return Result{}, err
	}
	if ev.Txns, err = parseTxns(images); err != nil {
		return Result{}, err
	}
	rec.Transactions = len(ev.Txns)
	if err := Check(ev); err != nil {
		return refused(err)
	}
	if rec.Images, err = r.save(job, rec, images); err != nil {
		// Nothing is discarded that was not saved first.
		return refused(fmt.Errorf("%w: %w", ErrRefused, err))
	}
	undo, err := r.tools.read(ctx, addr, resume, own.firstLog, "--flashback", "--disable-log-bin")
	if err != nil {
		return Result{}, err
	}
	// From here the instance changes: the mark goes first, so a repair
	// cut short is never rewound twice.
	rec.State = state.RepairRewinding
	if err := r.put(ctx, rec, job.Fence); err != nil {
		return Result{}, err
	}
	r.o.Logger.Warn().Str("cluster", job.Cluster.Name).Str("instance", job.Instance.Name).Str("errant", rec.Errant).
		Int("transactions", rec.Transactions).Str("images", rec.Images).Msg("rewinding a deposed master's never-acknowledged transactions")
	if err := r.tools.apply(ctx, addr, undo); err != nil {
		return Result{}, err
	}
	db := r.db(addr)
	if _, err := db.ExecContext(ctx, "RESET MASTER"); err != nil {
		return Result{}, fmt.Errorf("repair: RESET MASTER on %s: %w", job.Instance.Name, err)
	}
	// A position prints as digits, dashes and commas only.
	if _, err := db.ExecContext(ctx, "SET GLOBAL gtid_slave_pos = '"+resume.String()+"'"); err != nil {
		return Result{}, fmt.Errorf("repair: gtid_slave_pos on %s: %w", job.Instance.Name, err)
	}
	// Rewound: its data and positions are the master's at the fork. A
	// failure to start replication now is a plain rejoin next time.
	rec.State = state.RepairRejoined
	if err := r.put(ctx, rec, job.Fence); err != nil {
		return Result{}, err
	}
	if err := r.o.Ops.Replicate(ctx, addr, master, mysqld.SlavePos); err != nil {
		return Result{}, fmt.Errorf("repair: rejoin %s: %w", job.Instance.Name, err)
	}
	return Result{Outcome: Rewound, Record: rec}, nil
}

// evidence gathers what Judge needs besides the binlog.
func (r *Repairer) evidence(ctx context.Context, job Job, own server, errant []gtid.GTID, resume gtid.Pos) (Evidence, error) {
	ev := Evidence{Mode: r.o.Mode, ServerID: own.serverID, Errant: errant, Resume: resume,
		SemiSync: own.semi, Margin: r.o.Margin, Others: map[string]State{}}
	recs, err := r.o.Store.Failovers(ctx, r.o.DC, job.Cluster.Name)
	if err != nil {
		return Evidence{}, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].OldMaster == job.Instance.Name && recs[i].Kind != "" {
			ev.Deposed = &recs[i]
			break
		}
	}
	switch prior, err := r.o.Store.Repair(ctx, r.o.DC, job.Cluster.Name, job.Instance.Name); {
	case err == nil:
		ev.Prior = &prior
	case !errors.Is(err, state.ErrNotFound):
		return Evidence{}, err
	}
	// The other instances, read now: one that cannot be read was counted
	// by the failover record when it was a candidate.
	for _, in := range job.Cluster.Instances {
		if in.Name == job.Instance.Name || in.Name == job.Master.Instance {
			continue
		}
		if st, err := r.binlogState(ctx, in.Addr); err == nil {
			ev.Others[in.Name] = st
		}
	}
	return ev, nil
}

// save writes the row images of the errant transactions to a new file in
// Dir and returns its path.
func (r *Repairer) save(job Job, rec state.RepairRecord, images []byte) (string, error) {
	if err := os.MkdirAll(r.o.Dir, 0o750); err != nil {
		return "", fmt.Errorf("repair: images directory: %w", err)
	}
	name := fmt.Sprintf("%s.%s.%s.%s.binlog.sql", r.o.DC, job.Cluster.Name, job.Instance.Name,
		r.o.Now().UTC().Format("20060102T150405.000Z"))
	path := filepath.Join(r.o.Dir, name)
	head := fmt.Sprintf(`-- drplane haagent: transactions discarded from %s/%s/%s when it was rejoined to %s.
-- They were never acknowledged to a client (failover %s). GTIDs: %s (%d transactions).
-- The instance's binlog past %s, as mariadb-binlog -vv printed it: BINLOG statements
-- with the decoded rows as "###" comments. Do not replay it as is: it sets the
-- original GTIDs.
`, r.o.DC, job.Cluster.Name, job.Instance.Name, job.Master.Instance, rec.FailoverID, rec.Errant, rec.Transactions, rec.Resume)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("repair: images file: %w", err)
	}
	_, werr := f.WriteString(head)
	if werr == nil {
		_, werr = f.Write(images)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", fmt.Errorf("repair: images file %s: %w", path, werr)
	}
	return path, nil
}

func (r *Repairer) put(ctx context.Context, rec state.RepairRecord, fence state.Fence) error {
	rec.At = r.o.Now().UTC()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := r.o.Store.PutRepair(pctx, rec, &fence); err != nil {
		return fmt.Errorf("repair: record: %w", err)
	}
	return nil
}

// server is what the repair reads of the instance itself.
type server struct {
	serverID uint32
	state    State
	semi     SemiSync
	firstLog string
}

func (r *Repairer) server(ctx context.Context, addr string) (server, error) {
	db := r.db(addr)
	var s server
	var st string
	var timeoutMS int64
	var waitNoSlave int
	if err := db.QueryRowContext(ctx, `SELECT @@GLOBAL.server_id, @@GLOBAL.gtid_binlog_state,
		@@GLOBAL.rpl_semi_sync_master_timeout, @@GLOBAL.rpl_semi_sync_master_wait_no_slave`).
		Scan(&s.serverID, &st, &timeoutMS, &waitNoSlave); err != nil {
		return server{}, fmt.Errorf("repair: read %s: %w", addr, err)
	}
	var err error
	if s.state, err = ParseState(st); err != nil {
		return server{}, fmt.Errorf("repair: %s: %w", addr, err)
	}
	s.semi.Timeout, s.semi.WaitNoSlave = time.Duration(timeoutMS)*time.Millisecond, waitNoSlave == 1
	var noTx sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS
		WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_NO_TX'`).Scan(&noTx); err != nil {
		return server{}, fmt.Errorf("repair: read %s: %w", addr, err)
	}
	s.semi.NoTx = noTx.Int64
	var size any
	if len(s.state) > 0 {
		if err := db.QueryRowContext(ctx, "SHOW BINARY LOGS").Scan(&s.firstLog, &size); err != nil {
			return server{}, fmt.Errorf("repair: SHOW BINARY LOGS on %s: %w", addr, err)
		}
	}
	return s, nil
}

func (r *Repairer) binlogState(ctx context.Context, addr string) (State, error) {
	var st string
	if err := r.db(addr).QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&st); err != nil {
		return nil, fmt.Errorf("repair: read %s: %w", addr, err)
	}
	return ParseState(st)
}

func (r *Repairer) db(addr string) *sql.DB { return r.pools.DB(addr) }
