// Command drlab runs drplane's local multi-DC lab on real parts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/drplane/drplane/cmd/drlab/internal/drill"
	"github.com/drplane/drplane/cmd/drlab/internal/lab"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/logging"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func run(args []string) int {
	root := &cobra.Command{
		Use:           "drlab",
		Short:         "drplane's local multi-DC lab on real MariaDB, etcd and NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCmd(), downCmd(), drillCmd(), fenceCmd(), dcCmd())
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "drlab: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, config.ErrInvalid) {
		return config.ExitInvalid
	}
	return 1
}

func upCmd() *cobra.Command {
	var dir, cfgPath, binDir, logLevel string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "start the lab in the foreground until Ctrl-C or SIGTERM",
		Long: `Starts 2 cities / 3 DCs (city-a: dc-a1, dc-a2; city-b: dc-b1): per DC a MariaDB
master and 2 replicas (GTID, semi-sync AFTER_SYNC), an etcd member and a NATS
JetStream server (both inside this process), and the DC's services
(coordinator, haagent, reship, collector) as separate processes. Writes
DIR/lab.json, prints the time to ready, and stops everything on Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lab.LoadConfig(cfgPath)
			if err != nil {
				return &exitError{code: config.ExitInvalid, err: err}
			}
			if binDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binDir = filepath.Dir(exe)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := logging.New(os.Stderr, logging.Options{Level: logLevel, Format: "console"}, map[string]string{"component": "drlab"})
			return lab.Up(ctx, lab.Options{Dir: dir, Config: cfg, BinDir: binDir, Fence: fenceArgv(dir), Logger: log, Out: cmd.OutOrStdout()})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".lab", "lab directory (data, logs, lab.json)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "lab YAML (default: the standard 3-DC lab)")
	cmd.Flags().StringVar(&binDir, "bin", "", "directory of the service binaries (default: drlab's own directory)")
	cmd.Flags().StringVar(&logLevel, "log-level", zerolog.LevelWarnValue, "drlab's own log level")
	return cmd
}

func downCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "stop and remove a lab left behind in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(dir); err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab in %s\n", dir)
				return nil
			}
			_, err := lab.Down(dir, cmd.OutOrStdout())
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	return cmd
}

func drillCmd() *cobra.Command {
	var dir, steps, output, binDir, brk string
	var repeat int
	var rate float64
	var fresh, noFence bool
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "run the DR drill on the lab in --dir (or on a fresh lab it starts and stops)",
		Long: `Writes steadily through the SDK (a writer pool per DC, every write an id
with its acknowledgement time) to every shard of the sample keyspace while it
runs DR events in order: kill (kill -9 a DC's master), switchover (graceful,
through the API), pause (SIGSTOP a master past detection, then SIGCONT),
evacuate, restore, dc-loss (every process of a DC killed: city failover),
dc-return (the DC back, fenced, its exact loss counted, then restored). Steps
the services do not offer are reported as not available. After each step it checks, reading MySQL
directly, that no acknowledged write was lost, that no two instances of a
cluster were writable at once, that no deposed master acknowledged a write,
that every DC holds the same data, that nothing was applied twice, and that
every shard has one owner. Prints per event the RTO, the write-block window
and the RPO next to the system's own figures (failover records, evacuation
and restore operations), writes DIR/drill-report.json, and exits 1 when any
check failed. --break adds a deliberate fault after each step, to see the
checks fail.`,
		Example: `  drlab drill --fresh
  drlab drill --steps kill,pause --repeat 10 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := drill.ParseSteps(steps)
			if err != nil {
				return &exitError{code: config.ExitInvalid, err: err}
			}
			if err := drill.ParseBreak(brk); err != nil {
				return &exitError{code: config.ExitInvalid, err: err}
			}
			if output != "table" && output != "json" {
				return &exitError{code: config.ExitInvalid, err: fmt.Errorf("-o %q: want table or json", output)}
			}
			if repeat < 1 || rate <= 0 {
				return &exitError{code: config.ExitInvalid, err: fmt.Errorf("--repeat and --rate must be positive")}
			}
			if binDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binDir = filepath.Dir(exe)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := logging.New(os.Stderr, logging.Options{Level: zerolog.LevelWarnValue, Format: "console"}, map[string]string{"component": "drlab"})
			fence := fenceArgv(dir)
			if noFence {
				fence = nil
			}
			start := func(ctx context.Context, ready func(*labfile.Lab)) error {
				return lab.Up(ctx, lab.Options{Dir: dir, Config: lab.DefaultConfig(), BinDir: binDir, Fence: fence, Logger: log, Out: os.Stderr, Ready: ready})
			}
			var report *drill.Report
			err = drill.OnLab(ctx, dir, fresh, start, func(l *labfile.Lab) error {
				report, err = drill.Run(ctx, drill.Options{Lab: l, DC: labDCs{dir: l.Drlab.Dir}, Steps: list, Repeat: repeat, Rate: rate, Break: brk, Progress: os.Stderr, Logger: log})
				if err != nil {
					return err
				}
				return report.WriteFile(filepath.Join(l.Drlab.Dir, "drill-report.json"))
			})
			if report != nil {
				if output == "json" {
					_ = report.JSON(cmd.OutOrStdout())
				} else {
					_ = report.Table(cmd.OutOrStdout())
				}
			}
			if err != nil {
				return err
			}
			if !report.Passed {
				return &exitError{code: 1, err: errors.New("drill: a check failed")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".lab", "lab directory (a running lab, or where to start one)")
	cmd.Flags().StringVar(&steps, "steps", "all", "comma-separated steps: "+strings.Join(drill.AllSteps, ",")+" (or all)")
	cmd.Flags().IntVar(&repeat, "repeat", 1, "run the step list this many times on the same lab")
	cmd.Flags().Float64Var(&rate, "rate", drill.DefaultRate, "writes per second over all shards")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "report format: table or json")
	cmd.Flags().StringVar(&binDir, "bin", "", "directory of the service binaries for a fresh lab (default: drlab's own directory)")
	cmd.Flags().BoolVar(&fresh, "fresh", false, "always start a fresh lab in --dir (refused while a lab runs there)")
	cmd.Flags().BoolVar(&noFence, "no-fence-hook", false, "a fresh lab's HA agents run without the fence hook: a paused master is not killed but fenced over SQL when it resumes, and repaired")
	cmd.Flags().StringVar(&brk, "break", "", "add a deliberate fault after each step, to see the checks fail: "+strings.Join(drill.Breaks, ","))
	return cmd
}

// fenceArgv is the HA agents' fence hook in a lab in dir: this binary's
// fence command (nil when its path is unknown: no hook).
func fenceArgv(dir string) []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	// No wait for the exit: a killed process answers nothing more, and a
	// large mariadbd takes a while to exit under load.
	return []string{exe, "fence", "--dir", abs, "--wait", "0s"}
}

func fenceCmd() *cobra.Command {
	var dir string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "fence INSTANCE",
		Short: "kill a lab mysqld (the HA agents' fence hook)",
		Long: `Kills the lab instance's mariadbd with SIGKILL, which also ends a paused one, and
waits until it is gone (--wait); an instance that is not running counts as fenced. The
lab's HA agents run it (hooks.fence) before they promote another instance when
they cannot reach the old master. Exits 0 only when the instance is not running.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			got, err := lab.Fence(dir, args[0], wait)
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintln(cmd.OutOrStdout(), got)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Second, "how long to wait for the killed process to exit (0: return once it is killed)")
	return cmd
}

func dcCmd() *cobra.Command {
	var dir string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "dc",
		Short: "take a whole DC of the running lab away, or bring it back",
	}
	kill := &cobra.Command{
		Use:   "kill DC",
		Short: "kill every process of a DC at once, as a power loss would",
		Long: `Asks the lab running in --dir (over DIR/run/lab.sock) to send SIGKILL to every
process of the DC (its mysqld instances and its services) and to stop the DC's
etcd member and NATS server, which run inside drlab. Prints what it stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			stopped, err := lab.KillDCIn(ctx, dir, args[0])
			for _, s := range stopped {
				_, _ = fmt.Fprintln(cmd.OutOrStdout(), s)
			}
			return err
		},
	}
	start := &cobra.Command{
		Use:   "start DC",
		Short: "start a killed DC again: etcd member, NATS server, mysqld (read-only), services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := lab.StartDCIn(ctx, dir, args[0]); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "%s started\n", args[0])
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", ".lab", "lab directory")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the lab")
	cmd.AddCommand(kill, start)
	return cmd
}

// labDCs takes a DC of the lab in dir away and brings it back, through the
// running lab's control socket (drlab dc kill|start).
type labDCs struct{ dir string }

func (c labDCs) KillDC(ctx context.Context, dc string) ([]string, error) {
	return lab.KillDCIn(ctx, c.dir, dc)
}

func (c labDCs) StartDC(ctx context.Context, dc string) error { return lab.StartDCIn(ctx, c.dir, dc) }
