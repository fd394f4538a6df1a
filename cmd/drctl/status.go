package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// statusCmd is `drctl status [--dc DC]`.
func (a *app) statusCmd() *cobra.Command {
	var dc string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show DCs, MySQL clusters and instances, and service processes",
		Long: `status shows what the control plane observes right now: per DC its state,
each MySQL cluster's health and master, every instance's role, writability,
replication threads, lag, GTID position and semi-sync state, the drplane
service processes registered in the DC, and the DC's durability check:
a WARNING line per setting weaker than durable on acknowledgement (MySQL
sync_binlog=1, innodb_flush_log_at_trx_commit=1, semi-sync AFTER_SYNC on the
master, NATS JetStream sync always) or not reported.`,
		Example: `  drctl status --lab /tmp/drlab
  drctl status --dc dc-a1 -o json`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Topology.GetStatus(ctx, &drplanev1.GetStatusRequest{Dc: dc})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderStatus(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&dc, "dc", "", "show only this DC")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	return cmd
}

// completeDCs offers the DC names the API knows, when it can be reached.
func (a *app) completeDCs(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	return a.topologyNames(cmd, func(t *drplanev1.Topology) []string {
		var names []string
		for _, d := range t.GetDcs() {
			names = append(names, d.GetName())
		}
		return names
	})
}

// topologyNames offers the names pick takes from the API's topology, when
// the API can be reached; nothing otherwise.
func (a *app) topologyNames(cmd *cobra.Command, pick func(*drplanev1.Topology) []string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	c, err := a.dial(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	resp, err := c.Topology.GetTopology(ctx, &drplanev1.GetTopologyRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return pick(resp.GetTopology()), cobra.ShellCompDirectiveNoFileComp
}
