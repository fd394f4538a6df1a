package main

import (
	"context"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Shard and DC states as the commands take them.
var (
	shardStates = []string{"ACTIVE", "FROZEN", "MOVING"}
	dcStates    = []string{"ACTIVE", "DRAINING", "EVACUATED", "DOWN"}
)

// routeCmd is `drctl route KEYSPACE KEY`.
func (a *app) routeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "route KEYSPACE KEY",
		Short: "Show where a key lives: its shard, owner DC and that DC's master",
		Long: `route maps one key of a keyspace to its shard, the shard's owner and backup
DC and state, and the owner DC's current master of the keyspace's cluster,
with the revisions the answer was decided at. HASH keyspaces hash the key's
bytes (XXH64); RANGE keyspaces read it as an unsigned decimal integer.`,
		Example: `  drctl route orders 42
  drctl route orders 42 -o json`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeKeyspaceArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.Route(ctx, &drplanev1.RouteRequest{Keyspace: args[0], Key: args[1]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderRoute(w, args[1], resp.GetRoute()) })
		}),
	}
}

// shardsCmd is `drctl shards list|show|move|set-state`.
func (a *app) shardsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shards",
		Short: "List and change a keyspace's shard map",
		Long: `A keyspace's shard map says which DC owns each shard (takes its writes), which
DC is its backup and whether it is ACTIVE, FROZEN (writes refused for the
moment) or MOVING. Changes (move, set-state) need an admin token; they are
queued and applied by the leader coordinator, and audited.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.shardsListCmd(), a.shardsShowCmd(), a.shardsMoveCmd(), a.shardsSetStateCmd())
	return cmd
}

func (a *app) shardsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "list KEYSPACE",
		Short:             "List a keyspace's shards with owner, backup, state and the owners' masters",
		Example:           `  drctl shards list orders`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeKeyspaceArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.ListShards(ctx, &drplanev1.ListShardsRequest{Keyspace: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderShards(w, resp.GetTable()) })
		}),
	}
}

func (a *app) shardsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show KEYSPACE SHARD",
		Short:             "Show one shard: its range, owner, backup, state and the owner's master",
		Example:           `  drctl shards show orders 27`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeKeyspaceArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			id, err := parseShard(args[1])
			if err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.GetShard(ctx, &drplanev1.GetShardRequest{Keyspace: args[0], Shard: id})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderShard(w, resp) })
		}),
	}
}

func (a *app) shardsMoveCmd() *cobra.Command {
	var to, backup, reason string
	var force bool
	cmd := &cobra.Command{
		Use:   "move KEYSPACE SHARD --to DC [--backup DC] [--force] --reason R",
		Short: "Hand a shard to another DC through the safe handoff (or the raw flip with --force)",
		Long: `move makes DC the owner of one shard through the safe handoff: the shard is
frozen, the routers acknowledge, the new owner catches up to the old owner's
barrier, and owner and backup flip in one fenced write (a move_shard
operation, see drctl operations). The call waits up to --timeout. With
--force it is the raw shard-map change at once, without waiting for the new
owner to have the shard's data (audited as forced). Without --backup the
shard keeps its backup, unless that is the new owner, in which case the old
owner becomes the backup. Needs an admin token.`,
		Example:           `  drctl shards move orders 27 --to dc-b1 --reason "rebalance"`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeKeyspaceArg,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			id, err := parseShard(args[1])
			if err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.MoveShard(ctx, &drplanev1.MoveShardRequest{
				Keyspace: args[0], Shard: id, OwnerDc: to, BackupDc: backup, Reason: reason, Force: force,
			})
			if err != nil {
				return err
			}
			what := "owner " + to
			if backup != "" {
				what += ", backup " + backup
			}
			return a.print(resp, func(w io.Writer) error {
				return renderMutation(w, "shard "+args[0]+"/"+args[1]+": "+what, resp.GetMutation())
			})
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "DC that is to own the shard (required)")
	cmd.Flags().StringVar(&backup, "backup", "", "backup DC (default: keep it, or the old owner when the backup becomes the owner)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, audited)")
	cmd.Flags().BoolVar(&force, "force", false, "the raw flip at once, with no freeze and no catch-up")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.MarkFlagRequired("reason")
	_ = cmd.RegisterFlagCompletionFunc("to", a.completeDCs)
	_ = cmd.RegisterFlagCompletionFunc("backup", a.completeDCs)
	a.timeoutForMutation(cmd)
	return cmd
}

func (a *app) shardsSetStateCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "set-state KEYSPACE SHARD ACTIVE|FROZEN|MOVING --reason R",
		Short: "Freeze, unfreeze or mark moving one shard",
		Long: `set-state sets a shard's routing state: ACTIVE (the owner takes writes),
FROZEN (writes are refused with a retryable error) or MOVING (an owner change
is under way; the owner still takes writes). Needs an admin token.`,
		Example:           `  drctl shards set-state orders 27 FROZEN --reason "checking replication"`,
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: a.completeShardStateArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			id, err := parseShard(args[1])
			if err != nil {
				return err
			}
			st, ok := shardStateArg(args[2])
			if !ok {
				return usagef("invalid shard state %q: want %s", args[2], strings.Join(shardStates, ", "))
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.SetShardState(ctx, &drplanev1.SetShardStateRequest{Keyspace: args[0], Shard: id, State: st, Reason: reason})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				return renderMutation(w, "shard "+args[0]+"/"+args[1]+": state "+strings.ToUpper(args[2]), resp.GetMutation())
			})
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, audited)")
	_ = cmd.MarkFlagRequired("reason")
	a.timeoutForMutation(cmd)
	return cmd
}

// dcCmd is `drctl dc set-state`.
func (a *app) dcCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dc",
		Short: "Change a DC's administrative state",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var reason string
	set := &cobra.Command{
		Use:   "set-state DC ACTIVE|DRAINING|EVACUATED|DOWN --reason R",
		Short: "Set a DC's administrative state in the topology",
		Long: `set-state records a DC's administrative state: ACTIVE, DRAINING (being
evacuated), EVACUATED (owns no shards) or DOWN. It changes the topology only;
it moves no shard. Needs an admin token.`,
		Example:           `  drctl dc set-state dc-a2 DRAINING --reason "power maintenance"`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeDCStateArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			st := strings.ToUpper(args[1])
			if !contains(dcStates, st) {
				return usagef("invalid DC state %q: want %s", args[1], strings.Join(dcStates, ", "))
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Shard.SetDCState(ctx, &drplanev1.SetDCStateRequest{Dc: args[0], State: st, Reason: reason})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderMutation(w, "DC "+args[0]+": state "+st, resp.GetMutation()) })
		}),
	}
	set.Flags().StringVar(&reason, "reason", "", "why (required, audited)")
	_ = set.MarkFlagRequired("reason")
	a.timeoutForMutation(set)
	cmd.AddCommand(set)
	return cmd
}

// minMutationTimeout is the least call deadline of a mutation: the server
// waits up to 10s for the leader by default and answers "still queued"
// shortly before the caller's deadline.
const minMutationTimeout = 15 * time.Second

// timeoutForMutation raises the call deadline of a mutating command to
// minMutationTimeout when --timeout was left at its default.
func (a *app) timeoutForMutation(cmd *cobra.Command) {
	prev := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if f := cmd.Flags().Lookup("timeout"); f != nil && !f.Changed && a.flags.Timeout < minMutationTimeout {
			a.flags.Timeout = minMutationTimeout
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}

func parseShard(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return 0, usagef("invalid shard %q: want a shard id (a non-negative integer)", s)
	}
	return int32(n), nil
}

func shardStateArg(s string) (drplanev1.ShardState, bool) {
	switch strings.ToUpper(s) {
	case "ACTIVE":
		return drplanev1.ShardState_SHARD_STATE_ACTIVE, true
	case "FROZEN":
		return drplanev1.ShardState_SHARD_STATE_FROZEN, true
	case "MOVING":
		return drplanev1.ShardState_SHARD_STATE_MOVING, true
	}
	return drplanev1.ShardState_SHARD_STATE_UNSPECIFIED, false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// completeKeyspaceArg offers keyspace names from the API's topology for the
// first argument.
func (a *app) completeKeyspaceArg(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.topologyNames(cmd, func(t *drplanev1.Topology) []string {
		var names []string
		for _, ks := range t.GetKeyspaces() {
			names = append(names, ks.GetName())
		}
		return names
	})
}

// completeShardStateArgs completes KEYSPACE SHARD STATE.
func (a *app) completeShardStateArgs(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeKeyspaceArg(cmd, args, s)
	case 2:
		return shardStates, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeDCStateArgs completes DC STATE.
func (a *app) completeDCStateArgs(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return a.completeDCs(cmd, args, s)
	case 1:
		return dcStates, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}
