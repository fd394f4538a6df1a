package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/mysqld"
	"github.com/drplane/drplane/pkg/state"
)

// ErrNoDC means the lab has no DC of that name.
var ErrNoDC = errors.New("lab: no such DC")

// dcIndex returns the position of dc in the lab's configuration, which is
// also its etcd member's.
func (l *Lab) dcIndex(dc string) (int, error) {
	for i, d := range l.o.Config.DCs {
		if d.Name == dc {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrNoDC, dc)
}

// KillDC takes a whole DC away at once, as a power loss would: SIGKILL to
// every process of the DC (its service processes and its mysqld
// instances, also those a drill restarted) and the DC's etcd member and
// NATS server stopped abruptly (they run inside drlab). It returns what it
// stopped.
func (l *Lab) KillDC(dc string) ([]string, error) {
	i, err := l.dcIndex(dc)
	if err != nil {
		return nil, err
	}
	l.dcMu.Lock()
	defer l.dcMu.Unlock()
	var mu sync.Mutex
	var done []string
	var errs []error
	note := func(s string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		} else if s != "" {
			done = append(done, s)
		}
	}
	var wg sync.WaitGroup
	for _, p := range l.servicesOf(dc) {
		wg.Go(func() {
			if p.kill() {
				note(p.label()+" killed", nil)
			}
		})
	}
	for _, in := range l.mysql[dc] {
		wg.Go(func() {
			// The lab's own handle first (it reaps its child), then the pid
			// file, for an instance a drill started again.
			if pid := in.Pid(); in.Running() {
				if err := in.Kill(); err != nil {
					note("", err)
					return
				}
				note(fmt.Sprintf("%s killed (pid %d)", in.Name(), pid), nil)
			}
			s, err := Fence(l.dir, in.Name(), 10*time.Second)
			if err != nil || strings.Contains(s, "killed") {
				note(s, err)
			}
		})
	}
	wg.Wait()
	note("etcd member "+dc+" stopped", l.etcd.StopMember(i))
	note("NATS server "+dc+" stopped", l.nats.Stop(dc))
	l.say("DC %s killed: %s", dc, strings.Join(done, ", "))
	return done, errors.Join(errs...)
}

// StartDC brings back a DC that KillDC took away: its etcd member and NATS
// server, its mysqld instances (read-only, as every lab instance boots: the
// HA agent decides who is master), then its service processes with their
// old configuration, each waited ready. The instance the DC's master
// record names boots with mysqld.KeepBinlogTail: no instance replaced it,
// so its binlogged tail exists nowhere else in the DC and crash recovery
// must commit it, not truncate it; the others boot in the replica role.
func (l *Lab) StartDC(ctx context.Context, dc string) error {
	i, err := l.dcIndex(dc)
	if err != nil {
		return err
	}
	l.dcMu.Lock()
	defer l.dcMu.Unlock()
	if err := l.etcd.RestartMember(ctx, i); err != nil {
		return fmt.Errorf("etcd member %s: %w", dc, err)
	}
	if err := l.nats.Restart(ctx, dc); err != nil {
		return fmt.Errorf("NATS server %s: %w", dc, err)
	}
	master := l.recordedMaster(ctx, dc)
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range l.mysql[dc] {
		if in.Running() {
			continue
		}
		var extra []string
		if in.Name() == master {
			extra = append(extra, mysqld.KeepBinlogTail)
		}
		g.Go(func() error { return in.Start(gctx, extra...) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("mysqld of %s: %w", dc, err)
	}
	var started []*proc
	for _, p := range l.servicesOf(dc) {
		if p.running() {
			continue
		}
		np, err := p.respawn()
		if err != nil {
			return err
		}
		l.replaceProc(p, np)
		started = append(started, np)
	}
	g, gctx = errgroup.WithContext(ctx)
	for _, p := range started {
		g.Go(func() error { return p.waitReady(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	l.say("DC %s started again: etcd member, NATS server, %d mysqld, %d services", dc, len(l.mysql[dc]), len(started))
	return l.rewriteLabFile()
}

// recordedMaster returns the instance dc's master record names, or "" when
// it cannot be read (then every instance boots in the replica role).
func (l *Lab) recordedMaster(ctx context.Context, dc string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec, _, err := state.New(l.cli, state.DefaultRoot).Master(ctx, dc, l.o.Config.Cluster)
	if err != nil {
		l.say("DC %s: master record not read (%v): every instance boots in the replica role", dc, err)
		return ""
	}
	return rec.Instance
}

func (l *Lab) servicesOf(dc string) []*proc {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	var out []*proc
	for _, p := range l.procs {
		if p.dc == dc {
			out = append(out, p)
		}
	}
	return out
}

func (l *Lab) allProcs() []*proc {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	return slices.Clone(l.procs)
}

func (l *Lab) replaceProc(old, np *proc) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for i, p := range l.procs {
		if p == old {
			l.procs[i] = np
		}
	}
}

// rewriteLabFile writes lab.json again with the pids of now. It builds a
// new copy: the one handed to Options.Ready stays as it was.
func (l *Lab) rewriteLabFile() error {
	procs := l.allProcs()
	l.pmu.Lock()
	defer l.pmu.Unlock()
	f := l.file
	f.DCs = slices.Clone(l.file.DCs)
	for d := range f.DCs {
		dc := &f.DCs[d]
		dc.MySQL = slices.Clone(dc.MySQL)
		for m := range dc.MySQL {
			for _, in := range l.mysql[dc.Name] {
				if in.Name() == dc.MySQL[m].Name && in.Pid() > 0 {
					dc.MySQL[m].Pid = in.Pid()
				}
			}
		}
		dc.Services = slices.Clone(dc.Services)
		for s := range dc.Services {
			for _, p := range procs {
				if p.dc == dc.Name && p.name == dc.Services[s].Name && p.healthAddr == dc.Services[s].HealthAddr {
					dc.Services[s].Pid = p.cmd.Process.Pid
				}
			}
		}
	}
	l.file = f
	path := filepath.Join(l.dir, labfile.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil //nolint:nilerr // the lab is stopping
	}
	return labfile.Write(path, &f)
}
