package lab

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/labfile"
)

// status is the part of `drctl status -o json` the test reads.
type status struct {
	Dcs []struct {
		Name     string `json:"name"`
		City     string `json:"city"`
		Clusters []struct {
			Name      string `json:"name"`
			Master    string `json:"master"`
			Health    string `json:"health"`
			Instances []struct {
				Name       string `json:"name"`
				Role       string `json:"role"`
				Reachable  bool   `json:"reachable"`
				ReadOnly   bool   `json:"read_only"`
				IORunning  bool   `json:"io_running"`
				SQLRunning bool   `json:"sql_running"`
			} `json:"instances"`
		} `json:"clusters"`
		Services []struct {
			Name string `json:"name"`
		} `json:"services"`
		Durability struct {
			NatsSync string `json:"nats_sync"`
			Warnings []struct {
				Subject string `json:"subject"`
				Setting string `json:"setting"`
				Value   string `json:"value"`
			} `json:"warnings"`
		} `json:"durability"`
	} `json:"dcs"`
}

func drctl(t *testing.T, bin, labJSON string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "drctl"), append([]string{"--lab", labJSON}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("drctl: %v", err)
	}
	return out.String(), errb.String(), code
}

// TestLabUpStatusDown starts the whole lab as processes, checks drctl
// status, replication with the app user, and a clean stop.
func TestLabUpStatusDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 9 mysqld and 15 services")
	}
	bin := bins(t)
	dir := filepath.Join(t.TempDir(), "lab")
	var out bytes.Buffer
	up := exec.Command(filepath.Join(bin, "drlab"), "up", "--dir", dir)
	up.Stdout, up.Stderr = &out, &out
	// If the test binary dies without its cleanups (a test timeout), the
	// kernel sends drlab SIGTERM and drlab stops what it started.
	up.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, up.Start())
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = up.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = up.Process.Kill()
			}
			_ = exec.Command(filepath.Join(bin, "drlab"), "down", "--dir", dir).Run()
		}
	})
	labJSON := filepath.Join(dir, "lab.json")
	check.For(t, 120*time.Second, 100*time.Millisecond, func() error {
		select {
		case err := <-exited:
			t.Fatalf("drlab exited early: %v\n%s", err, out.String())
		default:
		}
		_, err := os.Stat(labJSON)
		return err
	})
	t.Logf("drlab output:\n%s", out.String())

	lab, err := labfile.Read(labJSON)
	require.NoError(t, err)
	require.Len(t, lab.DCs, 3)
	require.Len(t, lab.Etcd, 3)
	require.NotEmpty(t, lab.API.Token)

	// Every cluster converges to one writable master and two replicating replicas.
	var st status
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		stdout, stderr, code := drctl(t, bin, labJSON, "status", "-o", "json")
		if code != 0 {
			t.Logf("drctl status: exit %d: %s", code, stderr)
			return check.That(false, "every cluster OK in 3 DCs: %+v", st)
		}
		st = status{}
		require.NoError(t, json.Unmarshal([]byte(stdout), &st), stdout)
		for _, dc := range st.Dcs {
			for _, cl := range dc.Clusters {
				if cl.Health != "OK" {
					return check.That(false, "every cluster OK in 3 DCs: %+v", st)
				}
			}
			if dc.Durability.NatsSync == "" {
				return check.That(false, "%s: the NATS sync setting reported: %+v", dc.Name, dc.Durability)
			}
		}
		return check.That(len(st.Dcs) == 3, "every cluster OK in 3 DCs: %+v", st)
	})
	cities := map[string]string{}
	for _, dc := range st.Dcs {
		cities[dc.Name] = dc.City
		require.Len(t, dc.Clusters, 1)
		cl := dc.Clusters[0]
		masters, replicas := 0, 0
		for _, in := range cl.Instances {
			require.True(t, in.Reachable, "%s unreachable", in.Name)
			switch in.Role {
			case "ROLE_MASTER":
				masters++
				require.False(t, in.ReadOnly, "master %s read-only", in.Name)
				require.Equal(t, cl.Master, in.Name)
			case "ROLE_REPLICA":
				replicas++
				require.True(t, in.ReadOnly, "replica %s writable", in.Name)
				require.True(t, in.IORunning && in.SQLRunning, "replica %s not replicating", in.Name)
			default:
				t.Fatalf("%s has role %s", in.Name, in.Role)
			}
		}
		require.Equal(t, 1, masters, dc.Name)
		require.Equal(t, 2, replicas, dc.Name)
		// The lab is durable on acknowledgement: MySQL on commit, its
		// NATS flushing JetStream before each acknowledgement.
		require.Equal(t, "always", dc.Durability.NatsSync, dc.Name)
		require.Empty(t, dc.Durability.Warnings, dc.Name)
		svcs := map[string]bool{}
		for _, s := range dc.Services {
			svcs[s.Name] = true
		}
		for _, want := range []string{"coordinator", "haagent", "reship", "collector"} {
			require.True(t, svcs[want], "%s: service %s not registered", dc.Name, want)
		}
	}
	require.Equal(t, map[string]string{"dc-a1": "city-a", "dc-a2": "city-a", "dc-b1": "city-b"}, cities)

	table, _, code := drctl(t, bin, labJSON, "status")
	require.Equal(t, 0, code)
	for _, want := range []string{"dc-a1", "dc-a2", "dc-b1", "OK", "durability: OK", "NATS sync always"} {
		require.Contains(t, table, want)
	}

	// Routing: user id 42 of the orders keyspace is in shard 27 of the
	// default 64-shard map (XXH64("42") >> 58), owned by dc-a1, and the
	// route names dc-a1's current master.
	masterOf := map[string]string{}
	for _, d := range st.Dcs {
		masterOf[d.Name] = d.Clusters[0].Master
	}
	rt := requireRoute(t, bin, labJSON, "orders", "42", func(r route) bool { return r.Master.Instance == masterOf["dc-a1"] })
	require.Equal(t, "orders", rt.Keyspace)
	require.Equal(t, 27, rt.Shard)
	require.Equal(t, "dc-a1", rt.OwnerDC)
	require.Equal(t, "dc-b1", rt.BackupDC, "the backup is in the other city")
	require.Equal(t, "SHARD_STATE_ACTIVE", rt.State)
	require.Equal(t, "dc-a1", rt.Master.DC)
	require.Equal(t, lab.DCs[0].MySQL[0].Addr, rt.Master.Addr)
	require.NotEmpty(t, rt.MapRevision)

	// The app user writes on a master and the row reaches the replicas; a
	// replica refuses the app user's write.
	dc := lab.DCs[0]
	open := func(addr string) *sql.DB {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = dc.AppUser, dc.AppPassword, "tcp", addr, "shop"
		c, err := mysql.NewConnector(cfg)
		require.NoError(t, err)
		db := sql.OpenDB(c)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	master := open(dc.MySQL[0].Addr)
	_, err = master.Exec("INSERT INTO orders (id, user_id, amount_cents, note) VALUES (1, 42, 1999, 'e2e')")
	require.NoError(t, err)

	// The row crosses to the other DCs (reship → NATS → collector), and
	// drctl repl status reports the pairs.
	for _, other := range lab.DCs[1:] {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = other.AppUser, other.AppPassword, "tcp", other.MySQL[0].Addr, "shop"
		c, err := mysql.NewConnector(cfg)
		require.NoError(t, err)
		db := sql.OpenDB(c)
		t.Cleanup(func() { _ = db.Close() })
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			var note string
			return check.That(db.QueryRow("SELECT note FROM orders WHERE id = 1").Scan(&note) == nil && note == "e2e", "row never reached %s", other.Name)
		})
	}
	check.For(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, _, code := drctl(t, bin, labJSON, "repl", "status", "-o", "json")
		return check.That(code == 0 && strings.Contains(out, "dc-a1") && strings.Contains(out, "dc-b1"), "drctl repl status")
	})
	for _, r := range dc.MySQL[1:] {
		db := open(r.Addr)
		check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
			var n int
			return check.That(db.QueryRow("SELECT COUNT(*) FROM orders WHERE id = 1").Scan(&n) == nil && n == 1, "row never reached %s", r.Name)
		})
		_, err := db.Exec("INSERT INTO orders (id, user_id, amount_cents) VALUES (2, 1, 1)")
		var me *mysql.MySQLError
		require.True(t, errors.As(err, &me) && me.Number == 1290, "replica %s accepted an app write: %v", r.Name, err)
	}

	// A switchover through the API: the DC's active HA agent moves the
	// master; the old one then refuses the app user's writes.
	soJSON, stderr, code := drctl(t, bin, labJSON, "switchover", "dc-a1/main", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var so struct {
		Record struct {
			OldMaster string `json:"old_master"`
			NewMaster string `json:"new_master"`
			Outcome   string `json:"outcome"`
		} `json:"record"`
	}
	require.NoError(t, json.Unmarshal([]byte(soJSON), &so), soJSON)
	require.Equal(t, dc.MySQL[0].Name, so.Record.OldMaster)
	require.NotEqual(t, so.Record.OldMaster, so.Record.NewMaster)
	require.Equal(t, "FAILOVER_OUTCOME_SUCCEEDED", so.Record.Outcome)
	_, err = master.Exec("INSERT INTO orders (id, user_id, amount_cents) VALUES (3, 1, 1)")
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me) && me.Number == 1290, "the old master accepted an app write: %v", err)
	fos, _, code := drctl(t, bin, labJSON, "failovers")
	require.Equal(t, 0, code)
	require.Contains(t, fos, "switchover")
	// The route follows the new master.
	requireRoute(t, bin, labJSON, "orders", "42", func(r route) bool { return r.Master.Instance == so.Record.NewMaster })

	// Both halves of the switchover reach the audit log: the API's request
	// and the HA agent's run.
	requireSwitchoverAudited(t, bin, labJSON, "dc-a1/main")

	// SIGTERM stops every process the lab started.
	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "drlab exit:\n%s", out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("drlab did not stop:\n%s", out.String())
	}
	stopped = true
	require.Contains(t, out.String(), "lab stopped")
	var pids []int
	for _, d := range lab.DCs {
		for _, m := range d.MySQL {
			pids = append(pids, m.Pid)
		}
		for _, s := range d.Services {
			pids = append(pids, s.Pid)
		}
	}
	require.Len(t, pids, 24)
	for _, pid := range pids {
		require.Falsef(t, processAlive(pid), "pid %d still alive after drlab stopped", pid)
	}
}

// route is the part of `drctl route -o json` the test reads.
type route struct {
	Keyspace string `json:"keyspace"`
	Shard    int    `json:"shard"`
	OwnerDC  string `json:"owner_dc"`
	BackupDC string `json:"backup_dc"`
	State    string `json:"state"`
	Master   struct {
		DC       string `json:"dc"`
		Instance string `json:"instance"`
		Addr     string `json:"addr"`
	} `json:"master"`
	MapRevision string `json:"map_revision"`
}

// requireRoute runs `drctl route KEYSPACE KEY -o json` until ok accepts the
// answer, and returns it.
func requireRoute(t *testing.T, bin, labJSON, keyspace, key string, ok func(route) bool) route {
	t.Helper()
	var last route
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		stdout, stderr, code := drctl(t, bin, labJSON, "route", keyspace, key, "-o", "json")
		if code != 0 {
			t.Logf("drctl route: exit %d: %s", code, stderr)
			return check.That(false, "route of %s/%s: %+v", keyspace, key, last)
		}
		var resp struct {
			Route route `json:"route"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &resp), stdout)
		last = resp.Route
		return check.That(ok(last), "route of %s/%s: %+v", keyspace, key, last)
	})
	return last
}

func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestBadConfigExitsTwo: invalid configuration names the field and exits 2.
func TestBadConfigExitsTwo(t *testing.T) {
	bin := bins(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	cases := []struct {
		name  string
		cmd   []string
		field string
	}{
		{"lab: DC in an unknown city", []string{"drlab", "up", "--dir", filepath.Join(dir, "x"), "--config",
			write("city.yaml", "cities: [{name: city-a}]\ndcs: [{name: dc-a1, city: city-z}]\n")}, "dcs[0].city"},
		{"lab: duplicate MySQL ports", []string{"drlab", "up", "--dir", filepath.Join(dir, "y"), "--config",
			write("ports.yaml", "cities: [{name: c}]\ndcs:\n  - {name: d1, city: c, mysql_ports: [4001, 4002, 4003]}\n  - {name: d2, city: c, mysql_ports: [4004, 4002, 4005]}\n")}, "addr"},
		{"haagent: missing etcd", []string{"haagent", "--dc", "dc-a1", "--mysql-user", "u"}, "etcd.endpoints"},
		{"coordinator: unknown key", []string{"coordinator", "--config", write("c.yaml", "dc: dc-a1\netcd: {endpoints: [http://127.0.0.1:1]}\nbogus: 1\n")}, "bogus"},
		{"reship: bad etcd URL", []string{"reship", "--dc", "d", "--etcd", "127.0.0.1:2379", "--nats", "nats://x"}, "etcd.endpoints[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bin, c.cmd[0]), c.cmd[1:]...)
			var errb bytes.Buffer
			cmd.Stderr, cmd.Stdout = &errb, &errb
			err := cmd.Run()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "want exit 2, got %v: %s", err, errb.String())
			require.Equal(t, 2, ee.ExitCode(), errb.String())
			require.Contains(t, errb.String(), c.field)
		})
	}
}
