package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/embedetcd"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/pkg/topology"
)

// appUser is the application account created in every DC.
const appUser = "app"

// ErrRunning means a live lab already uses the directory.
var ErrRunning = errors.New("lab: already running")

// Options configure Up.
type Options struct {
	Dir    string
	Config Config
	// BinDir holds the service binaries (coordinator, haagent, reship, collector).
	BinDir string
	// Fence, when set, is the command the HA agents run to fence an old
	// master they cannot reach (hooks.fence), before the instance's name:
	// drlab's own "fence --dir DIR".
	Fence  []string
	Logger zerolog.Logger
	// Out receives the human progress report.
	Out io.Writer
	// Ready, if set, is called once the lab is up, with its lab.json (and
	// the hint to stop it with Ctrl-C is not printed).
	Ready func(*labfile.Lab)
}

// Lab is a running lab.
type Lab struct {
	o     Options
	dir   string
	etcd  *embedetcd.Cluster
	cli   *clientv3.Client
	nats  *embednats.Mesh
	mysql map[string][]*mysqld.Instance
	users map[string]mysqld.Users
	// appPasswords holds each DC's app-user password.
	appPasswords map[string]string
	// natsPassword is what every service (and every leafnode link)
	// authenticates to the lab's NATS with, as user natsUser.
	natsPassword string
	// pmu guards procs and file; dcMu serialises KillDC and StartDC.
	pmu     sync.Mutex
	dcMu    sync.Mutex
	procs   []*proc
	file    labfile.Lab
	started time.Time
}

func (l *Lab) say(format string, args ...any) {
	fmt.Fprintf(l.o.Out, "[%6.2fs] %s\n", time.Since(l.started).Seconds(), fmt.Sprintf(format, args...))
}

// Up starts the lab, blocks until ctx ends, then stops everything it started.
func Up(ctx context.Context, o Options) error {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	l := &Lab{o: o, dir: dir, mysql: map[string][]*mysqld.Instance{}, users: map[string]mysqld.Users{},
		appPasswords: map[string]string{}, natsPassword: secret(24), started: time.Now()}
	if err := l.prepareDir(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, o.Config.ReadyTimeout)
	err = l.start(startCtx)
	cancel()
	var stopControl func()
	if err == nil {
		stopControl, err = l.serveControl(ctx)
	}
	if err == nil {
		l.say("lab ready in %.1fs: %d DCs, %d mysqld, %d services — %s", time.Since(l.started).Seconds(),
			len(o.Config.DCs), l.mysqlCount(), len(l.procs), filepath.Join(dir, labfile.FileName))
		if o.Ready != nil {
			o.Ready(&l.file)
		} else {
			fmt.Fprintf(o.Out, "\n  drctl --lab %s status\n\nPress Ctrl-C to stop the lab.\n", filepath.Join(dir, labfile.FileName))
		}
		<-ctx.Done()
		stopControl()
		fmt.Fprintln(o.Out)
		l.say("stopping the lab")
	} else {
		l.say("start failed: %v", err)
	}
	l.stop()
	return err
}

func (l *Lab) prepareDir() error {
	lf := filepath.Join(l.dir, labfile.FileName)
	if f, err := labfile.Read(lf); err == nil && f.Drlab.Pid != os.Getpid() && alive(f.Drlab.Pid) {
		return fmt.Errorf("%w in %s (drlab pid %d): stop it with Ctrl-C or drlab down --dir %s", ErrRunning, l.dir, f.Drlab.Pid, l.dir)
	}
	if _, err := os.Stat(l.dir); err == nil {
		stopped, err := Down(l.dir, io.Discard)
		if err != nil {
			return err
		}
		if len(stopped) > 0 {
			l.say("cleaned a lab left behind in %s (%d processes)", l.dir, len(stopped))
		}
	}
	for _, d := range []string{"etcd", "nats", "mysql", "run", "logs", "conf"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) mysqlCount() int {
	n := 0
	for _, in := range l.mysql {
		n += len(in)
	}
	return n
}

func (l *Lab) start(ctx context.Context) error {
	cfg := l.o.Config
	dcs := make([]string, len(cfg.DCs))
	for i, dc := range cfg.DCs {
		dcs[i] = dc.Name
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		c, err := embedetcd.Start(gctx, embedetcd.Options{Dir: filepath.Join(l.dir, "etcd"), Names: dcs, Logger: l.o.Logger})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		l.etcd = c
		l.say("etcd: %d members up (%v)", len(dcs), c.Endpoints())
		return nil
	})
	syncAlways, syncInterval, err := l.o.Config.natsSync()
	if err != nil {
		return err
	}
	g.Go(func() error {
		m, err := embednats.Start(gctx, embednats.Options{DCs: dcs, Dir: filepath.Join(l.dir, "nats"), Logger: l.o.Logger,
			User: natsUser, Password: l.natsPassword, SyncAlways: syncAlways, SyncInterval: syncInterval})
		if err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		l.nats = m
		l.say("NATS JetStream: %d servers linked by leafnodes", len(dcs))
		return nil
	})
	g.Go(func() error { return l.startMySQL(gctx) })
	if err := g.Wait(); err != nil {
		return err
	}
	cli, err := l.etcd.Client(ctx)
	if err != nil {
		return err
	}
	l.cli = cli
	t, err := l.publishTopology(ctx)
	if err != nil {
		return err
	}
	if err := l.startServices(ctx); err != nil {
		return err
	}
	l.fillLabFile(t)
	return labfile.Write(filepath.Join(l.dir, labfile.FileName), &l.file)
}

// startMySQL initialises, starts and bootstraps every DC's cluster in parallel.
func (l *Lab) startMySQL(ctx context.Context) error {
	cfg := l.o.Config
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for d, dc := range cfg.DCs {
		insts := make([]*mysqld.Instance, cfg.Replicas+1)
		for i := range insts {
			port := 0
			if len(dc.MySQLPorts) > 0 {
				port = dc.MySQLPorts[i]
			}
			name := InstanceName(dc.Name, i)
			in, err := mysqld.New(mysqld.Options{
				Name: name, Dir: filepath.Join(l.dir, "mysql", name), Port: port,
				ServerID: uint32(100*(d+1) + i + 1), Logger: l.o.Logger,
				// One GTID domain per DC: its writes stay distinguishable
				// wherever they are replicated to.
				// Durable on commit: the binlog and the redo log are flushed
				// at every commit (drctl status checks it).
				Args: []string{"--gtid-domain-id=" + strconv.Itoa(d+1), "--sync-binlog=1", "--innodb-flush-log-at-trx-commit=1"},
			})
			if err != nil {
				return err
			}
			insts[i] = in
		}
		mu.Lock()
		l.mysql[dc.Name] = insts
		mu.Unlock()
		for _, in := range insts {
			g.Go(func() error { return in.Start(gctx) }) // Start initialises a new data directory
		}
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("mysqld: %w", err)
	}
	l.say("mysqld: %d instances started", l.mysqlCount())
	g, gctx = errgroup.WithContext(ctx)
	for _, dc := range cfg.DCs {
		insts := l.mysql[dc.Name]
		g.Go(func() error {
			cl, err := mysqld.Bootstrap(gctx, mysqld.BootstrapOptions{
				Master: insts[0], Replicas: insts[1:], SemiSyncTimeout: cfg.SemiSyncTimeout, Logger: l.o.Logger,
			})
			if err != nil {
				return fmt.Errorf("%s: %w", dc.Name, err)
			}
			admin, err := insts[0].Admin(gctx)
			if err != nil {
				return err
			}
			appPw := secret(12)
			if err := mysqld.ApplySQL(gctx, admin, "", Schema()...); err != nil {
				return fmt.Errorf("%s schema: %w", dc.Name, err)
			}
			if err := mysqld.CreateAppUser(gctx, admin, appUser, appPw, "shop"); err != nil {
				return fmt.Errorf("%s app user: %w", dc.Name, err)
			}
			if err := cl.WaitReplicas(gctx); err != nil {
				return err
			}
			mu.Lock()
			l.users[dc.Name] = cl.Users
			l.appPasswords[dc.Name] = appPw
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	l.say("replication: GTID + semi-sync (AFTER_SYNC) in every DC, schema shop.orders and app user created")
	return nil
}

func (l *Lab) publishTopology(ctx context.Context) (topology.Topology, error) {
	cfg := l.o.Config
	t := cfg.Topology(func(dc, i int) int { return l.mysql[cfg.DCs[dc].Name][i].Port() })
	st := state.New(l.cli, state.DefaultRoot)
	if _, err := st.PutTopology(ctx, t, -1); err != nil {
		return t, fmt.Errorf("store topology: %w", err)
	}
	// Each keyspace's default shard map: owners round-robin over the DCs,
	// backups in the other city.
	for _, ks := range t.Keyspaces {
		if _, err := shardmap.Save(ctx, st, shardmap.New(ks, t), 0, nil, t); err != nil {
			return t, fmt.Errorf("store the shard map of keyspace %s: %w", ks.Name, err)
		}
	}
	for _, dc := range cfg.DCs {
		m := l.mysql[dc.Name][0]
		rec := state.MasterRecord{DC: dc.Name, Cluster: cfg.Cluster, Instance: m.Name(), Addr: m.Addr(), Term: 1,
			UpdatedAt: time.Now().UTC(), Reason: "lab bootstrap"}
		if _, err := st.PutMaster(ctx, rec, 0, nil); err != nil {
			return t, fmt.Errorf("store master record: %w", err)
		}
	}
	l.say("etcd: topology, shard maps and master records stored")
	return t, nil
}

// natsUser is the user the lab's services authenticate to NATS as.
const natsUser = "drplane"

func secret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// fillLabFile writes what the lab started into l.file, DCs in
// configuration order.
func (l *Lab) fillLabFile(t topology.Topology) {
	f := &l.file
	f.Etcd = l.etcd.Endpoints()
	f.Drlab = labfile.Drlab{Pid: os.Getpid(), Dir: l.dir}
	for _, cdc := range l.o.Config.DCs {
		dc := labfile.DC{Name: cdc.Name, City: cdc.City, NATS: l.nats.URL(cdc.Name), AppUser: appUser, AppPassword: l.appPasswords[cdc.Name]}
		for _, in := range l.mysql[cdc.Name] {
			dc.MySQL = append(dc.MySQL, labfile.Instance{Name: in.Name(), Addr: in.Addr(), Pid: in.Pid()})
		}
		for _, p := range l.procs {
			if p.dc == cdc.Name {
				dc.Services = append(dc.Services, labfile.Service{Name: p.name, Pid: p.cmd.Process.Pid, HealthAddr: p.healthAddr})
			}
		}
		f.DCs = append(f.DCs, dc)
	}
	for _, ks := range t.Keyspaces {
		f.Keyspaces = append(f.Keyspaces, labfile.Keyspace{Name: ks.Name, Shards: ks.Shards, Database: ks.Database, Table: ks.Table, ShardKey: ks.ShardKey})
	}
}

// stop stops services, then MySQL, NATS and etcd, and reports each.
func (l *Lab) stop() {
	clean := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	l.dcMu.Lock() // no DC killed or started meanwhile
	defer l.dcMu.Unlock()
	procs := l.allProcs()
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.stop(10 * time.Second) {
				mu.Lock()
				clean++
				mu.Unlock()
			}
			_ = os.Remove(p.pidPath)
		}()
	}
	wg.Wait()
	if len(procs) > 0 {
		l.say("stopped %d services (%d exited cleanly)", len(procs), clean)
	}
	n := 0
	for _, insts := range l.mysql {
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if in.Running() {
					_ = in.Stop(ctx)
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	// A mysqld restarted outside the lab's own handles (the drill restarts
	// the masters it killed, as a supervisor would) is stopped by its pid
	// file.
	more, _ := killPidFiles(l.dir, 10*time.Second)
	n += len(more)
	if n > 0 {
		l.say("stopped %d mysqld", n)
	}
	if l.cli != nil {
		_ = l.cli.Close()
	}
	if l.nats != nil {
		l.nats.Close()
		l.say("stopped NATS")
	}
	if l.etcd != nil {
		l.etcd.Close()
		l.say("stopped etcd")
	}
	_ = os.Remove(filepath.Join(l.dir, labfile.FileName))
	l.say("lab stopped; data left in %s", l.dir)
}
