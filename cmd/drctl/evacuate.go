package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// maxParallel is the most shards one wave may hand off, as the API
// enforces it.
const maxParallel = 4096

// waveFlags are the flags evacuate and restore share.
type waveFlags struct {
	parallel int32
	dryRun   bool
	wait     bool
	reason   string
}

func (a *app) bindWaveFlags(cmd *cobra.Command, f *waveFlags) {
	fs := cmd.Flags()
	fs.Int32Var(&f.parallel, "parallel", 0, "shards handed off together in one wave, 1 to 4096 (default: the server's, 64); --wave is the same flag")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan (shards per target, waves, lag per pair) and change nothing")
	fs.BoolVar(&f.wait, "wait", false, "follow the operation until it is finished (progress bar on a terminal, a line per shard otherwise)")
	fs.StringVar(&f.reason, "reason", "", "why (audited)")
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "wave" {
			name = "parallel"
		}
		return pflag.NormalizedName(name)
	})
	cmd.MarkFlagsMutuallyExclusive("dry-run", "wait")
}

func (f *waveFlags) check() error {
	if f.parallel < 0 || f.parallel > maxParallel {
		return usagef("invalid --parallel %d: want 1 to %d shards per wave", f.parallel, maxParallel)
	}
	return nil
}

// evacuateCmd is `drctl evacuate DC [--to DC] [--parallel N] [--dry-run] [--wait]`.
func (a *app) evacuateCmd() *cobra.Command {
	var f waveFlags
	var to string
	cmd := &cobra.Command{
		Use:   "evacuate DC",
		Short: "Hand every shard a DC owns to another DC, safely, in waves",
		Long: `evacuate drains a DC: every shard it owns is handed to its backup DC (or to
--to), never into a DC that is DRAINING, DOWN or EVACUATED, balanced when
several targets qualify. The coordinator leader runs it as a crash-safe
operation in waves of up to --parallel shards: each wave freezes its shards,
waits for the routers to acknowledge and for the target to apply everything
up to the old owner's watermark, then flips them in one fenced transaction.
The DC is DRAINING while it runs and EVACUATED once it owns no shard; it keeps
replicating in.

Without --wait the command returns once the operation is stored; follow it
with drctl operations watch ID. --dry-run prints the plan and changes
nothing. Needs an operator token.

With --wait, the exit code tells the outcome: 0 succeeded, 1 failed (resume
it with drctl operations resume ID), 5 canceled. -o json prints one JSON
line per shard handoff as it finishes.`,
		Example: `  drctl evacuate dc-a1 --dry-run
  drctl evacuate dc-a1 --reason "power maintenance" --wait
  drctl evacuate dc-a1 --to dc-a2 --parallel 16 --wait -o json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeDCArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.Evacuate(ctx, &drplanev1.EvacuateRequest{
				Dc: args[0], To: to, DryRun: f.dryRun, Parallel: f.parallel, Reason: f.reason,
			})
			if err != nil {
				return err
			}
			return a.started(ctx, c.Evacuation, resp.GetOperation(), f.wait)
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "send every shard to this DC instead of its backup")
	_ = cmd.RegisterFlagCompletionFunc("to", a.completeDCs)
	a.bindWaveFlags(cmd, &f)
	return cmd
}

// restoreCmd is `drctl restore DC [--move-home] [--dry-run] [--wait]`.
func (a *app) restoreCmd() *cobra.Command {
	var f waveFlags
	var moveHome bool
	cmd := &cobra.Command{
		Use:   "restore DC",
		Short: "Set a DC ACTIVE again and, with --move-home, hand its home shards back",
		Long: `restore undoes an evacuation: the DC is set ACTIVE (it takes shards again) and,
with --move-home, every shard whose home is the DC and that another DC owns
now is handed back to it through the same safe handoff, in waves. The shard
map keeps each shard's home DC. It also ends a canceled evacuation: the DC
stays DRAINING after a cancel until it is restored or the evacuation resumed.
Needs an operator token; --wait, --dry-run and -o json work as for evacuate.`,
		Example: `  drctl restore dc-a1
  drctl restore dc-a1 --move-home --dry-run
  drctl restore dc-a1 --move-home --reason "maintenance done" --wait`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeDCArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.Restore(ctx, &drplanev1.RestoreRequest{
				Dc: args[0], MoveHome: moveHome, DryRun: f.dryRun, Parallel: f.parallel, Reason: f.reason,
			})
			if err != nil {
				return err
			}
			return a.started(ctx, c.Evacuation, resp.GetOperation(), f.wait)
		}),
	}
	cmd.Flags().BoolVar(&moveHome, "move-home", false, "hand the DC's home shards back to it")
	a.bindWaveFlags(cmd, &f)
	return cmd
}

// started prints a stored (or dry-run) operation, then follows it when
// wait is set.
func (a *app) started(ctx context.Context, c drplanev1.EvacuationServiceClient, op *drplanev1.Operation, wait bool) error {
	if op.GetDryRun() || !wait {
		return a.print(op, func(w io.Writer) error { return renderStarted(w, op) })
	}
	return a.follow(ctx, c, op.GetId())
}

// completeDCArg offers DC names for the first argument.
func (a *app) completeDCArg(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeDCs(cmd, args, s)
}
