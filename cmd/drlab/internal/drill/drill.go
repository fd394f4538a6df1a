package drill

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
)

// Options configure a drill.
type Options struct {
	// Lab is the running lab's lab.json.
	Lab *labfile.Lab
	// Steps in order; Repeat times.
	Steps  []string
	Repeat int
	// Rate is the writers' total rate (writes per second).
	Rate     float64
	Keyspace string
	// RecoverBound bounds the wait for writes to recover after a fault;
	// ConvergeBound the wait for the DCs to hold equal data;
	// RedundancyBound the wait for every cluster to be fully redundant
	// again between steps.
	RecoverBound, ConvergeBound, RedundancyBound time.Duration
	// Break, when set (one of Breaks), adds a deliberate fault after each
	// step, to show that the checks fail on it.
	Break string
	// DC takes a whole DC away and brings it back (the dc-loss and
	// dc-return steps); nil leaves those steps not available.
	DC DCControl
	// Warmup is how long the writers run before the first step.
	Warmup time.Duration
	// Progress receives one line per step and check as the drill goes.
	Progress io.Writer
	Logger   zerolog.Logger
}

// Defaults of Options.
const (
	DefaultRate            = 100
	DefaultRecoverBound    = 30 * time.Second
	DefaultConvergeBound   = 30 * time.Second
	DefaultRedundancyBound = 30 * time.Second
	DefaultWarmup          = 3 * time.Second
)

// Drill is one run of the drill against a lab.
type Drill struct {
	o       Options
	lab     *labfile.Lab
	ks      labfile.Keyspace
	cluster string
	api     *apiclient.Client
	store   *state.Store
	writers *Writers
	sampler *Sampler
	mysql   *MySQL
	started time.Time

	events []Event
	checks []CheckResult
	// final is set for the last checkpoint, after which the writers stay
	// held.
	final bool
	// resumed is when the writers were let go after the last checkpoint.
	resumed time.Time
	// losses are the DC losses so far (dc-loss steps), the last one first
	// to return.
	losses []*CityLoss
}

// leadIn is how long the writers write after a checkpoint before the next
// fault is injected.
const leadIn = time.Second

// leadIn waits until the writers have written for leadIn since the last
// checkpoint.
func (d *Drill) leadIn(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(d.resumed.Add(leadIn))):
		return nil
	}
}

func (d *Drill) say(format string, args ...any) {
	if d.o.Progress != nil {
		fmt.Fprintf(d.o.Progress, "[%6.1fs] %s\n", time.Since(d.started).Seconds(), fmt.Sprintf(format, args...))
	}
}

// Run runs the drill and returns its report. An error means the drill
// could not run (no lab, no API); violations are in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Repeat < 1 {
		o.Repeat = 1
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Keyspace == "" {
		o.Keyspace = "orders"
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.RecoverBound, DefaultRecoverBound)
	def(&o.ConvergeBound, DefaultConvergeBound)
	def(&o.RedundancyBound, DefaultRedundancyBound)
	def(&o.Warmup, DefaultWarmup)
	d := &Drill{o: o, lab: o.Lab, started: time.Now()}
	for _, ks := range o.Lab.Keyspaces {
		if ks.Name == o.Keyspace {
			d.ks = ks
		}
	}
	if d.ks.Name == "" {
		return nil, fmt.Errorf("drill: keyspace %q is not in the lab", o.Keyspace)
	}
	if err := d.connect(ctx); err != nil {
		return nil, err
	}
	defer d.close()
	return d.run(ctx)
}

// connect opens the API, etcd and MySQL handles and learns the cluster.
func (d *Drill) connect(ctx context.Context) error {
	api, err := apiclient.Dial(ctx, apiclient.Options{Addr: d.lab.API.GRPC, Token: d.lab.API.Token, Timeout: 10 * time.Second, Source: "lab.json"})
	if err != nil {
		return err
	}
	d.api = api
	cli, err := clientv3.New(clientv3.Config{Endpoints: d.lab.Etcd, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zapNop()})
	if err != nil {
		return fmt.Errorf("drill: etcd: %w", err)
	}
	d.store = state.New(cli, state.DefaultRoot)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	topo, _, err := d.store.Topology(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("drill: read the topology from etcd: %w", err)
	}
	for _, ks := range topo.Keyspaces {
		if ks.Name == d.ks.Name {
			d.cluster = ks.Cluster
		}
	}
	if d.cluster == "" {
		return fmt.Errorf("drill: keyspace %q has no cluster in the topology", d.ks.Name)
	}
	if d.mysql, err = NewMySQL(d.lab, d.ks); err != nil {
		return err
	}
	if d.sampler, err = NewSampler(d.lab, d.cluster); err != nil {
		return err
	}
	d.writers, err = NewWriters(WritersOptions{Lab: d.lab, Conn: api.Conn(), Keyspace: d.ks.Name, Rate: d.o.Rate, Logger: d.o.Logger})
	return err
}

func (d *Drill) close() {
	if d.sampler != nil {
		d.sampler.Close()
	}
	if d.mysql != nil {
		d.mysql.Close()
	}
	if d.store != nil {
		_ = d.store.Client().Close()
	}
	if d.api != nil {
		_ = d.api.Close()
	}
}

func (d *Drill) run(ctx context.Context) (*Report, error) {
	d.say("waiting for every cluster to be fully redundant")
	if err := d.waitRedundant(ctx); err != nil {
		return nil, fmt.Errorf("drill: the lab is not ready: %w", err)
	}
	lctx, stop := context.WithCancel(ctx)
	g, lctx := errgroup.WithContext(lctx)
	ready := make(chan struct{})
	g.Go(func() error { return d.sampler.Run(lctx) })
	g.Go(func() error { return d.writers.Run(lctx, ready) })
	var runErr error
	select {
	case <-ready:
		runErr = d.steps(ctx)
	case <-lctx.Done():
	}
	stop()
	if err := g.Wait(); err != nil && runErr == nil && ctx.Err() == nil {
		runErr = err
	}
	d.say("writers and sampler stopped")
	if runErr != nil {
		return nil, runErr
	}
	return d.report(), nil
}

// steps runs the warm-up, every round of the steps, and the final checks.
func (d *Drill) steps(ctx context.Context) error {
	d.say("writers: %.0f writes/s over %d shards, %d writers per DC in %d DCs", d.o.Rate, d.ks.Shards, workersPerDC, len(d.lab.DCs))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.o.Warmup):
	}
	d.checkpoint(ctx, "warmup", nil)
	n, away := 0, ""
	for round := 1; round <= d.o.Repeat; round++ {
		for _, name := range d.o.Steps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ev := Event{Step: name, Kind: name, Round: round}
			fn, why := d.step(ctx, name)
			if fn == nil {
				ev.Reason = why
				d.say("%s: not available: %s", name, why)
				d.events = append(d.events, ev)
				continue
			}
			ev.Available = true
			dc := d.lab.DCs[n%len(d.lab.DCs)].Name
			n++
			// restore and dc-return act on the DC the step before them took away.
			switch name {
			case StepEvacuate:
				away = dc
			case StepDCLoss:
				dc = d.lossDC(dc)
				away = dc
			case StepRestore, StepDCReturn:
				if away != "" {
					dc = away
				}
			}
			// The writers were held for the last checkpoint: let them
			// write steadily again first, or the event's outage would
			// include the hold.
			if err := d.leadIn(ctx); err != nil {
				return err
			}
			d.say("%s#%d in %s", name, round, dc)
			fn(ctx, d, dc, &ev)
			writes := d.writers.Writes()
			ev.Outage = MeasureOutage(writes, ev.Shards, ev.At, ev.Done, ev.OldMaster)
			ev.Shard = MeasureShards(writes, ev.Shards, ev.At, ev.Done, ev.OldMaster)
			matchRewound(ev.Record, writes)
			if err := d.breakAfter(ctx, dc); err != nil && ev.Err == "" {
				ev.Err = "break " + d.o.Break + ": " + err.Error()
			}
			label := fmt.Sprintf("%s#%d", name, round)
			if ev.Err != "" {
				d.say("  %s", ev.Err)
			}
			d.say("  %s: RTO %s, block %s, %d failed writes", ev.Target, ev.Outage.RTO.Round(time.Millisecond),
				ev.Outage.Block.Round(time.Millisecond), ev.Outage.Failed)
			d.checks = append(d.checks, result(NameRecovered, label, recoveredViolations(ev), "writes to the affected shards acknowledged again"))
			d.redundancy(ctx, label)
			d.checkpoint(ctx, label, &ev)
			d.events = append(d.events, ev)
		}
	}
	// The last checkpoint keeps the writers held, so that every
	// acknowledged write is checked.
	d.final = true
	d.checkpoint(ctx, "end", nil)
	return nil
}

func recoveredViolations(ev Event) []string {
	var bad []string
	if ev.Err != "" {
		bad = append(bad, ev.Err)
	}
	if !ev.Outage.Recovered {
		bad = append(bad, "no write to the affected shards acknowledged after the event")
	}
	return bad
}

// redundancy waits for every cluster to be fully redundant and records the
// check.
func (d *Drill) redundancy(ctx context.Context, label string) {
	began := time.Now()
	err := d.waitRedundant(ctx)
	var bad []string
	if err != nil {
		bad = append(bad, err.Error())
	}
	d.checks = append(d.checks, result(NameRedundancy, label, bad, fmt.Sprintf("every cluster fully redundant after %s", time.Since(began).Round(time.Millisecond))))
	if err != nil {
		d.say("  not fully redundant within %s: %v", d.o.RedundancyBound, err)
	}
}

// waitRedundant polls every DC's cluster until it is fully redundant.
func (d *Drill) waitRedundant(ctx context.Context) error {
	deadline := time.Now().Add(d.o.RedundancyBound)
	for {
		var err error
		for _, dc := range d.lab.DCs {
			if err = d.mysql.Redundant(ctx, dc.Name); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkpoint holds the writers, waits for the DCs to converge, and runs the
// data checks; ev, when set, gets the lost writes of its shards.
func (d *Drill) checkpoint(ctx context.Context, label string, ev *Event) {
	d.writers.Pause()
	if !d.final {
		defer func() {
			d.writers.Resume()
			d.resumed = time.Now()
		}()
	}
	began := time.Now()
	var digests []Digest
	for {
		digests = d.digests(ctx)
		if converged(digests) || time.Since(began) > d.o.ConvergeBound || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(began)
	add := func(r CheckResult) {
		d.checks = append(d.checks, r)
		if r.Outcome == Fail {
			d.say("  FAIL %s: %s", r.Name, r.Detail)
		}
	}
	add(CheckConverged(label, digests, took))

	writes := d.writers.Writes()
	var acked []Write
	lo, hi := int64(0), int64(0)
	for _, w := range writes {
		if w.Acked() {
			acked = append(acked, w)
		}
		if lo == 0 || w.ID < lo {
			lo = w.ID
		}
		hi = max(hi, w.ID)
	}
	present, err := d.mysql.Present(ctx, lo, hi)
	if err != nil {
		add(result(NameLost, label, []string{"cannot read the DCs: " + err.Error()}, ""))
	} else {
		add(CheckLostWrites(label, acked, present, d.lossChecks(label, acked, present, add)))
		if ev != nil {
			ev.LostWrites = lostOn(acked, present, ev.Shards)
		}
	}
	counters, err := d.mysql.Counters(ctx, d.writers.Keys())
	if err != nil {
		add(result(NameDuplicate, label, []string{"cannot read the counters: " + err.Error()}, ""))
	} else {
		add(CheckDuplicates(label, counters))
	}
	add(d.checkOwners(ctx, label))
	d.say("  checks after %s: data compared in %s", label, took.Round(time.Millisecond))
}

func converged(ds []Digest) bool {
	for _, d := range ds {
		if d.Err != "" || d.Rows != ds[0].Rows || d.Sum != ds[0].Sum {
			return false
		}
	}
	return len(ds) > 0
}

// lostOn counts the acknowledged writes to shards missing from any DC.
func lostOn(acked []Write, present map[string]map[int64]bool, shards []int) int {
	n := 0
	for _, w := range acked {
		if !slices.Contains(shards, w.Shard) {
			continue
		}
		for _, have := range present {
			if !have[w.ID] {
				n++
				break
			}
		}
	}
	return n
}

// checkOwners reads the shard map from etcd and every router's routes.
func (d *Drill) checkOwners(ctx context.Context, label string) CheckResult {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	m, err := shardmap.Load(cctx, d.store, d.ks.Name)
	cancel()
	if err != nil {
		return result(NameOwner, label, []string{"read the shard map: " + err.Error()}, "")
	}
	routed := map[string]map[int]string{}
	var live []string
	for _, dc := range d.lab.DCs {
		if d.mysql.down[dc.Name] {
			continue
		}
		live = append(live, dc.Name)
		owners := map[int]string{}
		for shard, key := range d.writers.Keys() {
			if rt, err := d.writers.Router(dc.Name).Route(d.ks.Name, key); err == nil {
				owners[shard] = rt.Owner
			}
		}
		routed[dc.Name] = owners
	}
	return CheckOwners(label, m, routed, live)
}

// ownedShards lists the shards a DC owns now, from the shard map.
func (d *Drill) ownedShards(dc string) []int {
	return d.shardsWhere(func(s shardmap.Shard) bool { return s.Owner == dc })
}

// homeShards lists the shards whose home is dc.
func (d *Drill) homeShards(dc string) []int {
	return d.shardsWhere(func(s shardmap.Shard) bool { return s.HomeDC() == dc })
}

func (d *Drill) shardsWhere(ok func(shardmap.Shard) bool) []int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := shardmap.Load(ctx, d.store, d.ks.Name)
	if err != nil {
		return nil
	}
	var out []int
	for _, s := range m.Shards {
		if ok(s) {
			out = append(out, s.ID)
		}
	}
	sort.Ints(out)
	return out
}
