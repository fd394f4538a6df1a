// Command drlab runs drplane's local multi-DC lab on real parts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/drplane/drplane/cmd/drlab/internal/lab"
	"github.com/drplane/drplane/pkg/config"
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
	root.AddCommand(upCmd(), downCmd())
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
			return lab.Up(ctx, lab.Options{Dir: dir, Config: cfg, BinDir: binDir, Logger: log, Out: cmd.OutOrStdout()})
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
