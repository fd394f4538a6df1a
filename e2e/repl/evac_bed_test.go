package repl

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/freeport"
	"github.com/drplane/drplane/pkg/router"
)

// apiToken is the admin token of the bed's coordinators.
const apiToken = "evac-admin-token"

// Handoff settings of the bed's coordinators: a short grace, so that a
// router that does not acknowledge costs each wave little.
const (
	routerGrace = 300 * time.Millisecond
	sessionTTL  = 2 * time.Second
)

// coordinator is one coordinator process of the bed and its API address.
type coordinator struct {
	*service
	id   string
	grpc string
}

// newCoordinator prepares (and starts) a coordinator in d.
func (b *bed) newCoordinator(d *dc, n int) *coordinator { return b.newCoordinatorWith(d, n, nil) }

// newCoordinatorWith prepares (and starts) a coordinator in d with the
// configuration keys of extra on top of the bed's.
func (b *bed) newCoordinatorWith(d *dc, n int, extra map[string]any) *coordinator {
	t := b.t
	t.Helper()
	ports, err := freeport.Pick(2)
	if err != nil {
		t.Fatalf("ports: %v", err)
	}
	id := fmt.Sprintf("coordinator-%s-%d", d.name, n)
	c := &coordinator{id: id, grpc: "127.0.0.1:" + strconv.Itoa(ports[0])}
	dir := t.TempDir()
	// DRPLANE_TEST_LOGS keeps the log, as for the other services.
	if keep := os.Getenv("DRPLANE_TEST_LOGS"); keep != "" {
		dir = filepath.Join(keep, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatalf("log dir: %v", err)
		}
	}
	cfg := map[string]any{
		"dc": d.name, "id": id,
		"etcd": map[string]any{"endpoints": b.etcd.Endpoints()},
		"log":  map[string]any{"level": "info", "format": "json"},
		"api":  map[string]any{"grpc_addr": c.grpc, "http_addr": "127.0.0.1:" + strconv.Itoa(ports[1])},
		"auth": map[string]any{"tokens": []map[string]any{{"name": "evac-admin", "role": "admin",
			"sha256": config.Secret(apiToken).SHA256()}}},
		"audit":   map[string]any{"store": "embedded", "dir": filepath.Join(dir, "audit")},
		"leader":  map[string]any{"session_ttl": sessionTTL.String()},
		"handoff": map[string]any{"router_grace": routerGrace.String(), "catch_up": "20s"},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	c.service = &service{t: t, name: "coordinator", dc: d.name, bin: filepath.Join(b.bin, "coordinator"), dir: dir, cfg: cfg,
		logPath: filepath.Join(dir, "coordinator.log")}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("last lines of %s's log:\n%s", id, tailFile(c.logPath, 40))
		}
	})
	c.start()
	return c
}

// leads reports whether the coordinator is the leader.
func (c *coordinator) leads(ctx context.Context) bool {
	v, err := c.metric(ctx, "drplane_coordinator_leader")
	return err == nil && v == 1
}

// dial connects to the coordinator's API at addr (the coordinator, or a
// proxy in front of it) with the admin token.
func dialAPI(t testing.TB, addr string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.Dial(context.Background(), apiclient.Options{Addr: addr, Token: apiToken, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// drctlRun is one finished drctl invocation.
type drctlRun struct {
	code           int
	stdout, stderr string
}

// drctl runs the drctl binary against api and returns when it exits;
// onLine, when set, gets each stdout line as it is printed.
func (b *bed) drctl(t testing.TB, api string, onLine func(string), args ...string) drctlRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "drctl"), append([]string{"--api", api, "--token", apiToken}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("drctl: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("drctl: %v", err)
	}
	var sb strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		sb.WriteString(sc.Text() + "\n")
		if onLine != nil {
			onLine(sc.Text())
		}
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("drctl %v: %v", args, err)
	}
	return drctlRun{code: code, stdout: sb.String(), stderr: errb.String()}
}

// handoffLine is the part of drctl's JSON line per handoff the test reads.
type handoffLine struct {
	Operation string `json:"operation_id"`
	Shard     int    `json:"shard"`
	From      string `json:"from"`
	To        string `json:"to"`
	Outcome   string `json:"outcome"`
	Watermark string `json:"watermark"`
	BlockMs   int64  `json:"block_ms"`
}

func parseHandoffs(t testing.TB, out string) []handoffLine {
	t.Helper()
	var hs []handoffLine
	for l := range strings.Lines(out) {
		var h handoffLine
		if err := json.Unmarshal([]byte(l), &h); err != nil {
			t.Fatalf("drctl line %q: %v", l, err)
		}
		hs = append(hs, h)
	}
	return hs
}

// Row ids of the SDK load: writes from loadIDBase up, one counter row per
// shard at counterIDBase+shard.
const (
	loadIDBase    = int64(8_000_000_000)
	counterIDBase = int64(9_000_000_000)
	sdkWorkers    = 8
	// sdkRate paces the whole load (writes per second).
	sdkRate = 200
)

// sdkLoad writes to every shard through the SDK: one router per DC, each
// write sent to the DC the writer believes owns the shard; a NotOwner
// refusal moves the shard's writes to the owner it names, a frozen shard
// is tried again on its next turn. A write inserts one row and adds one to
// its shard's counter row, in one transaction.
type sdkLoad struct {
	routers map[string]*router.Router
	keys    []string
	owner   []atomic.Pointer[string]
	nextID  atomic.Int64
	turn    atomic.Int64

	mu sync.Mutex
	// acked are the ids of acknowledged writes by shard; maybe counts, by
	// shard, writes whose outcome is unknown (the commit may have landed).
	acked   map[int][]int64
	ackedAt map[int64]time.Time
	maybe   map[int]int
	refused map[string]int

	stop context.CancelFunc
	done chan struct{}
}

// appDB opens a handle as the DC's application user on addr.
func (d *dc) appDB(addr string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = d.db.AppUser, d.db.AppPassword, "tcp", addr, database
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 3*time.Second, 5*time.Second, 5*time.Second
	cfg.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// newRouter runs an SDK router of d's application on conn until the test
// ends (or stop is called) and waits for its routes: of orders, or of
// the keyspaces named.
func (b *bed) newRouter(t testing.TB, d *dc, api *apiclient.Client, client string, keyspaces ...string) (*router.Router, context.CancelFunc) {
	t.Helper()
	if len(keyspaces) == 0 {
		keyspaces = []string{keyspace}
	}
	r, err := router.New(router.Options{Conn: api.Conn(), DC: d.name, Keyspaces: keyspaces, Client: client,
		DB: func(m router.Master) (*sql.DB, error) { return d.appDB(m.Addr) }})
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	select {
	case <-r.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("router %s got no routes in 30s", client)
	}
	return r, stop
}

// startSDKLoad starts the load through routers on api.
func (b *bed) startSDKLoad(t testing.TB, api *apiclient.Client) *sdkLoad {
	t.Helper()
	l := &sdkLoad{routers: map[string]*router.Router{}, acked: map[int][]int64{}, ackedAt: map[int64]time.Time{}, maybe: map[int]int{}, refused: map[string]int{},
		owner: make([]atomic.Pointer[string], b.shards), keys: make([]string, b.shards), done: make(chan struct{})}
	l.nextID.Store(loadIDBase)
	for _, name := range dcNames() {
		l.routers[name], _ = b.newRouter(t, b.dcs[name], api, "sdk-"+name)
	}
	for uid, found := int64(1), 0; found < b.shards; uid++ {
		key := strconv.FormatInt(uid, 10)
		rt, err := l.routers[dcA1].Route(keyspace, key)
		if err != nil {
			t.Fatalf("route %s: %v", key, err)
		}
		if l.keys[rt.Shard] == "" {
			l.keys[rt.Shard] = key
			owner := rt.Owner
			l.owner[rt.Shard].Store(&owner)
			found++
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range sdkWorkers {
		wg.Go(func() {
			for shard := range jobs {
				l.write(ctx, shard)
			}
		})
	}
	go func() {
		defer close(l.done)
		defer wg.Wait()
		defer close(jobs)
		tick := time.NewTicker(time.Second / sdkRate)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- int(l.turn.Add(1) % int64(len(l.keys))):
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(l.halt)
	return l
}

// halt stops the load and waits for the writes in flight.
func (l *sdkLoad) halt() {
	l.stop()
	<-l.done
}

// write makes one attempt on shard through its believed owner's router.
func (l *sdkLoad) write(ctx context.Context, shard int) {
	owner := *l.owner[shard].Load()
	id := l.nextID.Add(1)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	started := false
	err := l.routers[owner].Write(wctx, keyspace, l.keys[shard], func(db *sql.DB, _ router.Route) error {
		started = true
		tx, err := db.BeginTx(wctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(wctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, ?, 'sdk')",
			id, l.keys[shard], id%100_000); err != nil {
			return err
		}
		if _, err := tx.ExecContext(wctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, 1, 'counter') "+
			"ON DUPLICATE KEY UPDATE amount_cents = amount_cents + 1", counterIDBase+int64(shard), l.keys[shard]); err != nil {
			return err
		}
		return tx.Commit()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	var no *router.NotOwner
	var me *mysql.MySQLError
	switch {
	case err == nil:
		l.acked[shard] = append(l.acked[shard], id)
		l.ackedAt[id] = time.Now()
	case errors.As(err, &no):
		l.refused["not_owner"]++
		if no.Owner != "" {
			o := no.Owner
			l.owner[shard].Store(&o)
		}
	case errors.Is(err, router.ErrShardFrozen):
		l.refused["shard_frozen"]++
	case started && !errors.As(err, &me):
		// Lost between the statements and the answer: it may have landed.
		l.maybe[shard]++
		l.refused["unknown"]++
	default:
		l.refused[fmt.Sprintf("other: %v", err)]++
	}
}

// ackedTotal counts the acknowledged writes.
func (l *sdkLoad) ackedTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ids := range l.acked {
		n += len(ids)
	}
	return n
}

// waitAcked waits until the load has n more acknowledged writes than now.
func (l *sdkLoad) waitAcked(t testing.TB, n int) {
	t.Helper()
	want := l.ackedTotal() + n
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		return check.That(l.ackedTotal() >= want, "%d acknowledged writes, want %d", l.ackedTotal(), want)
	})
}

// summary describes what the load did.
func (l *sdkLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ids := range l.acked {
		n += len(ids)
	}
	return fmt.Sprintf("%d acknowledged, refused %v", n, l.refused)
}
