package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/health"
	"github.com/drplane/drplane/pkg/logging"
	"github.com/drplane/drplane/pkg/state"
)

// Exit codes of every service binary.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitConfig  = config.ExitInvalid
)

// Version is reported in registrations and by --version. Release builds set
// it at link time (make static, the Dockerfile):
//
//	-ldflags "-X github.com/drplane/drplane/pkg/daemon.Version=0.1.0"
//
// It is a variable only because -X cannot set a constant; nothing assigns it.
var Version = "0.1.0-dev"

// ErrLeaseLost is returned when the process lost its etcd lease for good.
var ErrLeaseLost = errors.New("daemon: etcd lease lost")

// Config is a service's configuration: its own fields plus Common, inline.
type Config interface {
	config.Validator
	Base() *Common
}

// Spec describes one service binary.
type Spec struct {
	// Name is the service and binary name.
	Name string
	// Short is a one-line summary; Long the rest of --help.
	Short, Long string
	// Config holds defaults; Main fills it.
	Config Config
	// Flags binds service-specific flags to Config's fields.
	Flags func(fs *pflag.FlagSet)
	// LogicImplemented is false while the service only runs its skeleton;
	// it is published in the registration and shown by drctl status.
	LogicImplemented bool
	// Run is the service. It returns when ctx ends (nil) or on failure.
	Run func(ctx context.Context, env *Env) error
	// Readiness names the readiness checks Run registers on Env.Health;
	// /readyz fails until each is registered (health.Options.Expect).
	Readiness []string
}

// Env is what Main hands to a service's Run.
type Env struct {
	Logger   zerolog.Logger
	Etcd     *clientv3.Client
	State    *state.Store
	Health   *health.Server
	Registry *prometheus.Registry
	// Session is the process's etcd lease; keys written with it vanish when
	// the process dies. It is replaced if it expires, so read it through
	// Lease when writing.
	session func() *concurrency.Session
	Record  state.ServiceRecord
}

// Lease returns the current process lease.
func (e *Env) Lease() clientv3.LeaseID { return e.session().Lease() }

// Session returns the current process session.
func (e *Env) Session() *concurrency.Session { return e.session() }

// Main runs the service until SIGINT or SIGTERM and returns the process
// exit code.
func Main(spec Spec, args []string, stdout, stderr io.Writer) int {
	return mainWith(spec, args, stdout, stderr, func() (context.Context, context.CancelFunc) {
		return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	})
}

// MainContext is Main stopped by ctx instead of signals, so a service can run
// in-process (tests, a single binary hosting several services). It returns
// ExitOK once ctx ends and the service stopped cleanly, having revoked its
// registration.
func MainContext(ctx context.Context, spec Spec, args []string, stdout, stderr io.Writer) int {
	return mainWith(spec, args, stdout, stderr, func() (context.Context, context.CancelFunc) {
		return context.WithCancel(ctx)
	})
}

// mainWith parses and validates the configuration, then runs the service
// under the context from runCtx, which is only made once the configuration is
// valid.
func mainWith(spec Spec, args []string, stdout, stderr io.Writer, runCtx func() (context.Context, context.CancelFunc)) int {
	fs := pflag.NewFlagSet(spec.Name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "YAML configuration file")
	check := fs.Bool("check-config", false, "validate the configuration, print it with secrets redacted, and exit (0 valid, 2 invalid)")
	version := fs.Bool("version", false, "print the name and version of the binary and exit")
	base := spec.Config.Base()
	base.BindFlags(fs)
	if spec.Flags != nil {
		spec.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stdout, "%s — %s\n\n%s\n\nUsage:\n  %s [flags]\n\nFlags:\n%s\nEnvironment: every YAML key as DRPLANE_<PATH> (e.g. DRPLANE_ETCD_ENDPOINTS).\nExit codes: 0 ok, 1 runtime failure, 2 invalid configuration.\n",
			spec.Name, spec.Short, strings.TrimSpace(spec.Long), spec.Name, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v\n", spec.Name, err)
		return ExitConfig
	}
	if *version {
		fmt.Fprintf(stdout, "%s %s\n", spec.Name, Version)
		return ExitOK
	}
	if err := config.Load(spec.Config, config.Source{File: *cfgFile, EnvPrefix: "DRPLANE", Flags: fs}); err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration: %v\n", spec.Name, err)
		return ExitConfig
	}
	if *check {
		fmt.Fprintf(stdout, "# %s configuration is valid\n%s", spec.Name, config.Dump(spec.Config))
		return ExitOK
	}
	log := logging.New(stderr, base.Log, map[string]string{"service": spec.Name, "dc": base.DC, "id": base.ID})
	ctx, stop := runCtx()
	defer stop()
	if err := run(ctx, spec, base, log); err != nil {
		log.Error().Err(err).Msg("exiting on error")
		return ExitFailure
	}
	log.Info().Msg("stopped cleanly")
	return ExitOK
}

// EtcdClient connects to etcd with the common options and checks that it
// answers before returning.
func EtcdClient(ctx context.Context, e Etcd) (*clientv3.Client, error) {
	tlsCfg, err := e.TLS.Client()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            e.Endpoints,
		DialTimeout:          e.DialTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Username:             e.Username,
		Password:             e.Password.Reveal(),
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", e.Endpoints, err)
	}
	cctx, cancel := context.WithTimeout(ctx, e.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, "/drplane-ping"); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("cannot reach etcd at %v within %s: %w", e.Endpoints, e.DialTimeout, err)
	}
	return cli, nil
}

func run(ctx context.Context, spec Spec, base *Common, log zerolog.Logger) error {
	cli, err := EtcdClient(ctx, base.Etcd)
	if err != nil {
		return err
	}
	defer cli.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hs := health.New(health.Options{Addr: base.HealthAddr, Registry: reg, Logger: log, Expect: spec.Readiness})
	if err := hs.Listen(); err != nil {
		return fmt.Errorf("health server: %w", err)
	}
	hs.AddReadiness("etcd", func(ctx context.Context) error {
		_, err := cli.Get(ctx, "/drplane-ping")
		return err
	})
	rec := state.ServiceRecord{
		Service: spec.Name, ID: base.ID, DC: base.DC, HealthAddr: hs.Addr(),
		StartedAt: time.Now().UTC(), Version: Version, LogicImplemented: spec.LogicImplemented,
	}
	st := state.New(cli, base.Etcd.Prefix)
	reg2 := newRegistrar(cli, st, base.Etcd.LeaseTTL, log)
	if err := reg2.register(ctx, rec); err != nil {
		return err
	}
	defer reg2.close()
	env := &Env{Logger: log, Etcd: cli, State: st, Health: hs, Registry: reg, session: reg2.current, Record: rec}
	log.Info().Str("health", hs.Addr()).Strs("etcd", base.Etcd.Endpoints).Bool("logic_implemented", spec.LogicImplemented).Msg("started")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return hs.Run(gctx) })
	g.Go(func() error { return reg2.keep(gctx, rec) })
	g.Go(func() error { return spec.Run(gctx, env) })
	return g.Wait()
}
