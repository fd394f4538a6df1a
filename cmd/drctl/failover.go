package main

import (
	"context"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Switchover wait bounds, as the API enforces them.
const (
	defaultSwitchoverWait = 30 * time.Second
	maxSwitchoverWait     = 300 * time.Second
	// switchoverCallMargin is added to the wait for the call's own deadline,
	// so that the server's timeout answer arrives before the client gives up.
	switchoverCallMargin = 15 * time.Second
)

// switchoverCmd is `drctl switchover <dc>/<cluster> [--to I] [--timeout D]`.
func (a *app) switchoverCmd() *cobra.Command {
	var to string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "switchover DC/CLUSTER",
		Short: "Move a MySQL cluster's master to another instance, gracefully",
		Long: `switchover asks the DC's HA agent to move the master of one MySQL cluster to
another instance without losing writes, and waits until it is done. It prints
the old and new master, the RTO and the block window (how long no instance
accepted writes).

Without --to the agent picks the most advanced eligible replica. --timeout is
how long to wait (1s to 300s); a switchover still running then may finish
later: see drctl failovers. Kill switches do not stop switchovers. Needs an
operator token.`,
		Example: `  drctl switchover dc-a1/db
  drctl switchover dc-a1/db --to dc-a1-db2 --timeout 60s`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			dc, cluster, ok := strings.Cut(args[0], "/")
			if !ok || dc == "" || cluster == "" || strings.Contains(cluster, "/") {
				return usagef("invalid cluster %q: want DC/CLUSTER, e.g. dc-a1/db", args[0])
			}
			if wait < time.Second || wait > maxSwitchoverWait {
				return usagef("invalid --timeout %s: want 1s to %s", wait, maxSwitchoverWait)
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(ctx, wait+switchoverCallMargin)
			defer cancel()
			resp, err := c.Failover.Switchover(ctx, &drplanev1.SwitchoverRequest{
				Dc: dc, Cluster: cluster, To: to, TimeoutSeconds: int32(math.Ceil(wait.Seconds())),
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderSwitchover(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "instance to promote (default: the agent picks)")
	// This --timeout replaces the global one: it is the switchover's wait,
	// and the call's deadline follows from it.
	cmd.Flags().DurationVar(&wait, "timeout", defaultSwitchoverWait, "how long to wait for the switchover to finish (1s to 300s)")
	return cmd
}

// failoversCmd is `drctl failovers [--dc D] [--cluster C] [--limit N]`.
func (a *app) failoversCmd() *cobra.Command {
	var dc, cluster string
	var limit int32
	cmd := &cobra.Command{
		Use:   "failovers",
		Short: "List automatic failovers and switchovers, newest first",
		Long: `failovers lists the failover records the HA agents wrote, newest first: per
failover or switchover its cluster, the old and new master, the outcome, the
RTO (failure detected or switchover asked for, to the new master writable), the
RPO (transactions lost, "unknown" when the old master's position was not
known), the block window of a switchover, and what triggered it (the analysis
code of an automatic failover, or the operator).

drctl failovers list and drctl failovers show ID are about city failovers
(whole DCs whose shards moved to their backups) instead.`,
		Example: `  drctl failovers
  drctl failovers --dc dc-a1 --cluster db --limit 10 -o json`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usagef("invalid --limit %d: want 1 to 1000", limit)
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Failover.ListFailovers(ctx, &drplanev1.ListFailoversRequest{Dc: dc, Cluster: cluster, Limit: limit})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderFailovers(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&dc, "dc", "", "only this DC")
	cmd.Flags().StringVar(&cluster, "cluster", "", "only clusters of this name")
	cmd.Flags().Int32Var(&limit, "limit", 50, "at most this many records (1 to 1000)")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	cmd.AddCommand(a.cityFailoversListCmd(), a.cityFailoversShowCmd())
	return cmd
}

// killSwitchCmd is `drctl killswitch set|clear|list`.
func (a *app) killSwitchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "killswitch",
		Short: "Stop or allow automatic failover: globally, in a DC, or for one cluster",
		Long: `A kill switch stops automatic failover in its scope: everywhere (no --dc), in
one DC (--dc), or for one cluster (--dc and --cluster). Switchovers an operator
asks for are not stopped. Setting and clearing need an admin token.`,
		// Runnable only so that an unknown subcommand is a usage error
		// rather than a help page.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.killSwitchSetCmd(), a.killSwitchClearCmd(), a.killSwitchListCmd())
	return cmd
}

func (a *app) killSwitchSetCmd() *cobra.Command {
	var dc, cluster, reason string
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set a kill switch (replaces the reason of one already set)",
		Example: `  drctl killswitch set --reason "network maintenance"
  drctl killswitch set --dc dc-a1 --cluster db --reason "replacing a disk"`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if err := checkScopeFlags(dc, cluster); err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Failover.SetKillSwitch(ctx, &drplanev1.SetKillSwitchRequest{Dc: dc, Cluster: cluster, Reason: reason})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderKillSwitchSet(w, resp) })
		}),
	}
	a.scopeFlags(cmd, &dc, &cluster)
	cmd.Flags().StringVar(&reason, "reason", "", "why automatic failover is stopped (required)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func (a *app) killSwitchClearCmd() *cobra.Command {
	var dc, cluster string
	cmd := &cobra.Command{
		Use:   "clear",
		Short: "Clear a kill switch (clearing one that is not set is not an error)",
		Example: `  drctl killswitch clear
  drctl killswitch clear --dc dc-a1 --cluster db`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if err := checkScopeFlags(dc, cluster); err != nil {
				return err
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Failover.ClearKillSwitch(ctx, &drplanev1.ClearKillSwitchRequest{Dc: dc, Cluster: cluster})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderKillSwitchClear(w, dc, cluster, resp) })
		}),
	}
	a.scopeFlags(cmd, &dc, &cluster)
	return cmd
}

func (a *app) killSwitchListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the kill switches that are set",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Failover.ListKillSwitches(ctx, &drplanev1.ListKillSwitchesRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderKillSwitches(w, resp) })
		}),
	}
}

// scopeFlags binds --dc and --cluster of a kill-switch command.
func (a *app) scopeFlags(cmd *cobra.Command, dc, cluster *string) {
	cmd.Flags().StringVar(dc, "dc", "", "DC of the switch (default: the global switch)")
	cmd.Flags().StringVar(cluster, "cluster", "", "cluster of the switch (needs --dc; default: the whole DC)")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
}

// checkScopeFlags refuses --cluster without --dc.
func checkScopeFlags(dc, cluster string) error {
	if cluster != "" && dc == "" {
		return usagef("--cluster needs --dc: cluster names repeat across DCs")
	}
	return nil
}

// completeClusters offers DC/CLUSTER names from the API's topology.
func (a *app) completeClusters(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.topologyNames(cmd, func(t *drplanev1.Topology) []string {
		var names []string
		for _, cl := range t.GetClusters() {
			names = append(names, cl.GetDc()+"/"+cl.GetName())
		}
		return names
	})
}

// failoverCmd is `drctl failover release <dc>/<cluster> --reason R`.
func (a *app) failoverCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Act on automatic failover: release an HA hold, fail a lost DC over",
	}
	cmd.AddCommand(a.failoverReleaseCmd(), a.failoverDCCmd())
	return cmd
}

func (a *app) failoverReleaseCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "release DC/CLUSTER",
		Short: "Let the HA agent fail a held (flapping) cluster over again",
		Long: `release lifts the failover budget's hold on one MySQL cluster (drctl status
shows "failover held: reason, until"): the DC's HA agent forgets the failovers
and master changes before now and fails the cluster over on its next cycle if
its master is dead. It does not lift a kill switch. Needs an operator token;
the release and its reason are audited.`,
		Example:           `  drctl failover release dc-a1/db --reason "db2's disk replaced"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeClusters,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			dc, cluster, ok := strings.Cut(args[0], "/")
			if !ok || dc == "" || cluster == "" || strings.Contains(cluster, "/") {
				return usagef("invalid cluster %q: want DC/CLUSTER, e.g. dc-a1/db", args[0])
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Failover.ReleaseFailoverHold(ctx, &drplanev1.ReleaseFailoverHoldRequest{
				Dc: dc, Cluster: cluster, Reason: reason,
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderRelease(w, dc+"/"+cluster, resp) })
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the cluster may fail over again (required)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}
