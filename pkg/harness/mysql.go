package harness

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/drplane/drplane/pkg/mysqld"
)

const (
	defaultMariaDBInstances = 3
	defaultDatabase         = "shop"
	defaultAppUser          = "app"
	mariaDBStartTimeout     = 90 * time.Second
)

// MariaDBOptions configure StartMariaDB. The zero value is a master with two
// semi-sync replicas, database "shop" and app user "app".
type MariaDBOptions struct {
	// Instances is the number of servers, master included. Default 3.
	Instances int
	// Database is created on the master; the app user gets ALL on it.
	// Default "shop".
	Database string
	// AppUser is the application account (no SUPER, READ_ONLY ADMIN or
	// REPLICATION privilege). Default "app"; its password is random.
	AppUser string
	// Schema statements run as root on the master with Database selected,
	// after the app user exists; the cluster waits until replicas have them.
	Schema []string
	// SemiSyncTimeout is the master's rpl_semi_sync_master_timeout. Default
	// mysqld.DefaultSemiSyncTimeout.
	SemiSyncTimeout time.Duration
	// Args are extra mariadbd arguments for every instance.
	Args []string
}

// MariaDBCluster is a running master with semi-sync replicas, stopped when
// the test ends.
type MariaDBCluster struct {
	// Cluster is the bootstrapped cluster: Master is the writable instance,
	// Replicas are read_only and replicate from it; Users and
	// SemiSyncTimeout as bootstrapped.
	*mysqld.Cluster
	// Database, AppUser and AppPassword describe the application account.
	Database    string
	AppUser     string
	AppPassword string

	t testing.TB
}

// StartMariaDB starts opts.Instances mariadbd processes on free loopback ports
// under t.TempDir(), in parallel, and bootstraps them as one GTID semi-sync
// cluster (the first instance is the master) with the app user and schema.
// Every instance is stopped (killed if it does not stop in time) in
// t.Cleanup. When MariaDB is not installed the test fails: it is never
// skipped.
func StartMariaDB(t testing.TB, opts MariaDBOptions) *MariaDBCluster {
	t.Helper()
	if opts.Instances <= 0 {
		opts.Instances = defaultMariaDBInstances
	}
	if opts.Database == "" {
		opts.Database = defaultDatabase
	}
	if opts.AppUser == "" {
		opts.AppUser = defaultAppUser
	}
	log := partLogger(t, zerolog.InfoLevel)
	root := t.TempDir()

	insts := make([]*mysqld.Instance, opts.Instances)
	for n := range insts {
		name := fmt.Sprintf("db%d", n+1)
		inst, err := mysqld.New(mysqld.Options{
			Name:          name,
			Dir:           filepath.Join(root, name),
			ServerID:      uint32(n + 1),
			Args:          opts.Args,
			StartTimeout:  mariaDBStartTimeout,
			DieWithParent: true,
			Logger:        log,
		})
		if err != nil {
			t.Fatalf("harness: mariadb %s: %v", name, err)
		}
		insts[n] = inst
	}
	t.Cleanup(func() { stopAll(t, insts) })

	ctx, cancel := context.WithTimeout(context.Background(), mariaDBStartTimeout)
	defer cancel()
	if err := startAll(ctx, insts); err != nil {
		if errors.Is(err, mysqld.ErrNotInstalled) {
			t.Fatalf("harness: %v", mysqld.ErrNotInstalled)
		}
		t.Fatalf("harness: start mariadb: %v", err)
	}
	cl, err := mysqld.Bootstrap(ctx, mysqld.BootstrapOptions{
		Master:          insts[0],
		Replicas:        insts[1:],
		SemiSyncTimeout: opts.SemiSyncTimeout,
		Logger:          log,
	})
	if err != nil {
		t.Fatalf("harness: bootstrap mariadb: %v", err)
	}
	appPw, err := mysqld.RandomPassword()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	c := &MariaDBCluster{
		Cluster:     cl,
		Database:    opts.Database,
		AppUser:     opts.AppUser,
		AppPassword: appPw,
		t:           t,
	}
	admin := c.AdminDB(c.Master)
	if err := mysqld.CreateAppUser(ctx, admin, c.AppUser, c.AppPassword, c.Database); err != nil {
		t.Fatalf("harness: app user: %v", err)
	}
	if len(opts.Schema) > 0 {
		if err := mysqld.ApplySQL(ctx, admin, c.Database, opts.Schema...); err != nil {
			t.Fatalf("harness: schema: %v", err)
		}
	}
	if err := cl.WaitReplicas(ctx); err != nil {
		t.Fatalf("harness: replicas did not catch up: %v", err)
	}
	return c
}

// startAll initializes and starts every instance concurrently.
func startAll(ctx context.Context, insts []*mysqld.Instance) error {
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for n, inst := range insts {
		wg.Go(func() { errs[n] = inst.Start(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopAll stops every instance concurrently; Stop kills what does not stop
// within its StopTimeout.
func stopAll(t testing.TB, insts []*mysqld.Instance) {
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Go(func() {
			if err := inst.Stop(context.Background()); err != nil {
				t.Errorf("harness: stop %s: %v", inst.Name(), err)
			}
		})
	}
	wg.Wait()
}

// appDSN returns the app user's DSN for inst, with the database selected.
func (c *MariaDBCluster) appDSN(inst *mysqld.Instance) string {
	return inst.DSN(c.AppUser, c.AppPassword, c.Database)
}

// AppDB opens a pool as the app user on inst; it is closed when the test
// ends.
func (c *MariaDBCluster) AppDB(inst *mysqld.Instance) *sql.DB {
	c.t.Helper()
	db, err := sql.Open("mysql", c.appDSN(inst))
	if err != nil {
		c.t.Fatalf("harness: app db %s: %v", inst.Name(), err)
	}
	c.t.Cleanup(func() { _ = db.Close() })
	return db
}

// AdminDB returns inst's root pool (see mysqld.Instance.Admin): do not close
// it; it is closed when the instance stops or is killed.
func (c *MariaDBCluster) AdminDB(inst *mysqld.Instance) *sql.DB {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := inst.Admin(ctx)
	if err != nil {
		c.t.Fatalf("harness: admin db %s: %v", inst.Name(), err)
	}
	return db
}

// WaitReplicas waits until every replica runs and has applied everything the
// master has, failing the test after timeout.
func (c *MariaDBCluster) WaitReplicas(timeout time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Cluster.WaitReplicas(ctx); err != nil {
		c.t.Fatalf("harness: %v", err)
	}
}
