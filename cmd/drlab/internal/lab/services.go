package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/freeport"
	"github.com/drplane/drplane/pkg/labfile"
)

// Services started in every DC, in start order.
func serviceNames() []string { return []string{"coordinator", "haagent", "reship", "collector"} }

// unit is one service process of a DC: the service and its ordinal.
type unit struct {
	svc string
	n   int
}

// units lists a DC's service processes: one of each, and cfg.Agents HA agents.
func (l *Lab) units() []unit {
	var out []unit
	for _, svc := range serviceNames() {
		count := 1
		if svc == "haagent" {
			count = l.o.Config.Agents
		}
		for n := 1; n <= count; n++ {
			out = append(out, unit{svc, n})
		}
	}
	return out
}

// base names a unit's files and its service id: dc-svc-n.
func (u unit) base(dc string) string { return dc + "-" + u.svc + "-" + strconv.Itoa(u.n) }

// serviceConfig renders a service's YAML configuration (it holds secrets:
// written 0600, never passed on the command line).
func (l *Lab) serviceConfig(dc string, u unit, healthAddr string, api labfile.API, tokens []map[string]any) (map[string]any, error) {
	users := l.users[dc]
	svc := u.svc
	c := map[string]any{
		"dc": dc, "id": u.base(dc), "health_addr": healthAddr,
		"etcd": map[string]any{"endpoints": l.etcd.Endpoints()},
		"log":  map[string]any{"level": "info", "format": "console"},
	}
	switch svc {
	case "coordinator":
		c["api"] = map[string]any{"grpc_addr": api.GRPC, "http_addr": api.HTTP}
		c["auth"] = map[string]any{"tokens": tokens}
		// Each coordinator indexes every audit event, and every DC's request
		// ledger, into its own embedded store.
		c["audit"] = map[string]any{"store": "embedded", "dir": filepath.Join(l.dir, "data", dc+"-coordinator-audit")}
		// Its DC's NATS: the ledger streams of every DC (in their JetStream
		// domains), its DC's reship for retries, the dead letters.
		c["nats_url"] = l.nats.URL(dc)
		c["nats"] = map[string]any{"user": natsUser, "password": l.natsPassword}
	case "haagent":
		c["mysql"] = map[string]any{"user": users.AdminUser, "password": users.AdminPassword,
			"repl_user": users.ReplUser, "repl_password": users.ReplPassword}
		c["poll_interval"] = l.o.Config.PollInterval.String()
		c["semi_sync_timeout"] = l.o.Config.SemiSyncTimeout.String()
		// A single-point primary fences its masters within the limit, and
		// the limit plus the TTL must stay below the semi-sync timeout.
		spl := min(10*time.Second, l.o.Config.SemiSyncTimeout-l.o.Config.AgentTTL)
		c["election"] = map[string]any{"ttl": l.o.Config.AgentTTL.String(), "fence_before": l.o.Config.AgentFenceBefore.String(),
			"single_point_limit": spl.String()}
		if len(l.o.Fence) > 0 {
			// A paused master is killed before another is promoted: it
			// can never answer read_only=0 beside the new master (ADR 0008).
			c["hooks"] = map[string]any{"fence": [][]string{append(append([]string(nil), l.o.Fence...), "{old_master}")}}
		}
		// The row images of the transactions a repair discards.
		c["repair"] = map[string]any{"dir": filepath.Join(l.dir, "data", u.base(dc)+"-repairs")}
	case "reship":
		// Binlog capture needs REPLICATION SLAVE and SLAVE MONITOR (the
		// replicas' received positions); the keyspaces come
		// from the topology in etcd.
		c["nats_url"] = l.nats.URL(dc)
		c["nats"] = map[string]any{"user": natsUser, "password": l.natsPassword}
		c["mysql"] = map[string]any{"cluster": l.o.Config.Cluster, "user": users.ReplUser, "password": users.ReplPassword}
		// The NATS server's sync setting, for the durability check of
		// drctl status.
		c["nats_monitor_url"] = l.nats.MonitorURL(dc)
	case "collector":
		// Applies as the application account, so a read-only (fenced)
		// master refuses it like any client.
		c["nats_url"] = l.nats.URL(dc)
		c["nats"] = map[string]any{"user": natsUser, "password": l.natsPassword}
		c["mysql"] = map[string]any{"cluster": l.o.Config.Cluster, "database": "shop",
			"user": appUser, "password": l.appPasswords[dc]}
	default:
		return nil, fmt.Errorf("unknown service %q", svc)
	}
	return c, nil
}

func (l *Lab) startServices(ctx context.Context) error {
	token, viewer := config.Secret(secret(24)), config.Secret(secret(24))
	// Every coordinator accepts the same two tokens: an admin's, and a
	// viewer's (the dashboard without operator actions).
	tokens := []map[string]any{
		{"name": "lab-admin", "role": "admin", "sha256": token.SHA256()},
		{"name": "lab-viewer", "role": "viewer", "sha256": viewer.SHA256()},
	}
	units := l.units()
	// Per DC: a health port per process, plus the coordinator's gRPC and REST ports.
	perDC := len(units) + 2
	ports, err := freeport.Pick(perDC * len(l.o.Config.DCs))
	if err != nil {
		return err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	for d, dc := range l.o.Config.DCs {
		dcPorts := ports[d*perDC : (d+1)*perDC]
		api := labfile.API{GRPC: addr(dcPorts[len(units)]), HTTP: addr(dcPorts[len(units)+1])}
		if d == 0 {
			l.file.API = labfile.API{GRPC: api.GRPC, HTTP: "http://" + api.HTTP, Token: token.Reveal(), ViewerToken: viewer.Reveal()}
		}
		for i, u := range units {
			health := addr(dcPorts[i])
			cfg, err := l.serviceConfig(dc.Name, u, health, api, tokens)
			if err != nil {
				return err
			}
			if err := l.spawnService(dc.Name, u, health, cfg); err != nil {
				return err
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range l.procs {
		g.Go(func() error { return p.waitReady(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	l.say("services: %d processes ready (%v per DC, %d HA agents each)", len(l.procs), serviceNames(), l.o.Config.Agents)
	return nil
}

func (l *Lab) spawnService(dc string, u unit, health string, cfg map[string]any) error {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	svc, base := u.svc, u.base(dc)
	confPath := filepath.Join(l.dir, "conf", base+".yaml")
	if err := os.WriteFile(confPath, data, 0o600); err != nil {
		return err
	}
	bin := filepath.Join(l.o.BinDir, svc)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("service binary %s missing (run make build): %w", bin, err)
	}
	logPath, pidPath := filepath.Join(l.dir, "logs", base+".log"), filepath.Join(l.dir, "run", base+".pid")
	args := []string{"--config", confPath}
	cmd, done, err := spawn(bin, args, nil, logPath, pidPath)
	if err != nil {
		return err
	}
	l.pmu.Lock()
	l.procs = append(l.procs, &proc{dc: dc, name: svc, healthAddr: health, cmd: cmd, done: done, logPath: logPath,
		bin: bin, args: args, pidPath: pidPath})
	l.pmu.Unlock()
	return nil
}
