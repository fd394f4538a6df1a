package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/apiclient"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// app is the state shared by all commands of one invocation.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	flags  apiclient.Flags
	output string
	// terminal, when set, replaces the check whether a writer is a
	// terminal (tests).
	terminal func(io.Writer) bool
}

// run executes drctl with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return (&app{stdout: stdout, stderr: stderr, getenv: getenv}).execute(ctx, args)
}

// execute runs the command tree on args and returns the exit code.
func (a *app) execute(ctx context.Context, args []string) int {
	stderr := a.stderr
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	code, line := classify(err)
	if line != "" {
		fmt.Fprintln(stderr, line)
		if code == exitUsage {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return code
}

// rootCmd builds the command tree.
func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "drctl",
		Short: "Operate drplane: status, routing, shards, DC states, evacuations, switchovers, failover history, kill switches, replication and divergence",
		Long: `drctl talks to the drplane control API.

The endpoint and token come from --api/--token, else DRPLANE_API/DRPLANE_TOKEN,
else the lab file named by --lab (a lab directory or its lab.json).

Exit codes: 0 ok, 1 API or runtime error (or a followed operation failed),
2 usage error, 3 unauthenticated or permission denied, 4 API unreachable,
5 a followed operation was canceled.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch a.output {
			case outputTable, outputJSON:
				return nil
			}
			return usagef("invalid output format %q: want %s or %s", a.output, outputTable, outputJSON)
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.API, "api", "", "host:port of the coordinator's gRPC API (env "+apiclient.EnvAPI+")")
	pf.StringVar(&a.flags.Token, "token", "", "API bearer token (env "+apiclient.EnvToken+")")
	pf.StringVar(&a.flags.Lab, "lab", "", "lab directory or lab.json to take the endpoint and token from")
	pf.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json")
	pf.DurationVar(&a.flags.Timeout, "timeout", 10*time.Second, "deadline of each API call")
	pf.StringVar(&a.flags.TLS.CAFile, "tls-ca", "", "CA certificate (PEM) to verify the API server; enables TLS")
	pf.StringVar(&a.flags.TLS.CertFile, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	pf.StringVar(&a.flags.TLS.KeyFile, "tls-key", "", "client key (PEM) for mutual TLS")
	pf.BoolVar(&a.flags.Insecure, "insecure", false, "send the token without TLS to an address that is not a loopback one")
	root.MarkFlagsRequiredTogether("tls-cert", "tls-key")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	for _, f := range []string{"tls-ca", "tls-cert", "tls-key"} {
		_ = root.MarkPersistentFlagFilename(f, "pem", "crt", "key")
	}
	_ = root.MarkPersistentFlagFilename("lab", "json")

	root.AddCommand(a.statusCmd(), a.switchoverCmd(), a.failoversCmd(), a.failoverCmd(), a.killSwitchCmd(), a.routeCmd(), a.shardsCmd(), a.dcCmd(), a.auditCmd(), a.replCmd(),
		a.evacuateCmd(), a.restoreCmd(), a.operationsCmd(), a.divergenceCmd())
	return root
}

// runE adapts a command body: errors it returns are marked as raised while
// running (see classify) unless they are already usage errors.
func (a *app) runE(fn func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd.Context(), cmd, args)
		if err == nil {
			return nil
		}
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return runError{err}
	}
}

// dial resolves the endpoint and connects.
func (a *app) dial(ctx context.Context) (*apiclient.Client, error) {
	f := a.flags
	f.Getenv = a.getenv
	o, err := apiclient.Resolve(f)
	if err != nil {
		return nil, err
	}
	return apiclient.Dial(ctx, o)
}

// print writes m in the selected format; table renders the table form.
func (a *app) print(m proto.Message, table func(io.Writer) error) error {
	if a.output == outputJSON {
		return renderJSON(a.stdout, m)
	}
	return table(a.stdout)
}
