package main

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// operationKinds are the values of operations list --kind.
var operationKinds = []string{"evacuate", "restore", "move_shard"}

// operationsCmd is `drctl operations list|show|watch|cancel|resume`.
func (a *app) operationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "operations",
		Aliases: []string{"ops"},
		Short:   "List, follow, cancel and resume evacuations, restores and safe shard moves",
		Long: `Operations are the long-running evacuations, restores and safe shard moves the
coordinator leader runs from etcd; a new leader resumes an unfinished one. Reads
need a viewer token, cancel and resume an operator token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.operationsListCmd(), a.operationsShowCmd(), a.operationsWatchCmd(), a.operationsCancelCmd(), a.operationsResumeCmd())
	return cmd
}

func (a *app) operationsListCmd() *cobra.Command {
	var kind string
	var running bool
	var limit int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List operations, newest first",
		Example: `  drctl operations list
  drctl operations list --running --kind evacuate -o json`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			k := drplanev1.OperationKind_OPERATION_KIND_UNSPECIFIED
			if kind != "" {
				v, ok := drplanev1.OperationKind_value["OPERATION_KIND_"+strings.ToUpper(kind)]
				if !ok {
					return usagef("invalid --kind %q: want %s", kind, strings.Join(operationKinds, ", "))
				}
				k = drplanev1.OperationKind(v)
			}
			if limit < 1 || limit > 500 {
				return usagef("invalid --limit %d: want 1 to 500", limit)
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.ListOperations(ctx, &drplanev1.ListOperationsRequest{Kind: k, RunningOnly: running, PageSize: limit})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderOperations(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&kind, "kind", "", "only this kind: "+strings.Join(operationKinds, ", "))
	cmd.Flags().BoolVar(&running, "running", false, "only unfinished operations (pending, running, canceling)")
	cmd.Flags().Int32Var(&limit, "limit", 50, "at most this many (1 to 500)")
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions(operationKinds, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) operationsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show ID",
		Short:             "Show one operation with every shard's handoff",
		Example:           `  drctl operations show evacuate-20250301T120000.000Z-1a2b3c4d`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeOperations,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.GetOperation(ctx, &drplanev1.GetOperationRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp.GetOperation(), func(w io.Writer) error { return renderOperation(w, resp.GetOperation()) })
		}),
	}
}

func (a *app) operationsWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow an operation until it is finished",
		Long: `watch follows an operation as evacuate --wait does: a progress bar on a
terminal, one line per finished handoff otherwise, one JSON line per handoff
with -o json. Exit code: 0 succeeded, 1 failed, 5 canceled. Interrupting the
watch does not stop the operation.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeOperations,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			return a.follow(ctx, c.Evacuation, args[0])
		}),
	}
}

func (a *app) operationsCancelCmd() *cobra.Command {
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Stop an operation after its current wave",
		Long: `cancel stops an operation after the wave it is running: every shard is left
either moved or unfrozen at its old owner. A canceled evacuation leaves its DC
DRAINING: resume it, or undo it with drctl restore DC [--move-home].`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeOperations,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.CancelOperation(ctx, &drplanev1.CancelOperationRequest{Id: args[0], Reason: reason})
			if err != nil {
				return err
			}
			if wait {
				return a.follow(ctx, c.Evacuation, args[0])
			}
			return a.print(resp.GetOperation(), func(w io.Writer) error { return renderChanged(w, "canceling", resp.GetOperation()) })
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (audited)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the operation until it stopped")
	return cmd
}

func (a *app) operationsResumeCmd() *cobra.Command {
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:               "resume ID",
		Short:             "Go on with a canceled or failed operation from where it stopped",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeOperations,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Evacuation.ResumeOperation(ctx, &drplanev1.ResumeOperationRequest{Id: args[0], Reason: reason})
			if err != nil {
				return err
			}
			if wait {
				return a.follow(ctx, c.Evacuation, args[0])
			}
			return a.print(resp.GetOperation(), func(w io.Writer) error { return renderChanged(w, "resumed", resp.GetOperation()) })
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (audited)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the operation until it is finished")
	return cmd
}

// completeOperations offers the ids of recent operations.
func (a *app) completeOperations(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.dial(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	resp, err := c.Evacuation.ListOperations(cmd.Context(), &drplanev1.ListOperationsRequest{PageSize: 50})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var ids []string
	for _, op := range resp.GetOperations() {
		ids = append(ids, op.GetId())
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}
