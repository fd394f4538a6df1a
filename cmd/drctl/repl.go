package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/drplane/drplane/pkg/apiclient"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Dead-letter listing bounds, as the API enforces them.
const (
	defaultDLQLimit = 100
	maxDLQLimit     = 1000
)

// replCmd is `drctl repl status|request|dlq`.
func (a *app) replCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repl",
		Short: "Cross-DC replication: lag per DC pair, where a request is, dead letters",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.replStatusCmd(), a.replRequestCmd(), a.replDLQCmd())
	return cmd
}

func (a *app) replStatusCmd() *cobra.Command {
	var dc string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show replication per DC pair and the ledger backlog per DC",
		Long: `status shows, per pair of DCs origin → target, what the target's collector
reports: capture→apply lag p50/p99 over its recent window, applied events per
second, the target's inbound backlog (pending), what it applied, dead-lettered,
found duplicated and got redelivered since it started, how many of the
origin's requests to it the ledger retried, and how long ago its newest
per-shard watermark moved. A pair whose collector reports nothing shows "-".

Then, per DC, the ledger backlog: requests captured there that some target
has not applied yet (pending) or dead-lettered, and the capture time of the
oldest pending one. The backlog needs a coordinator with nats_url.`,
		Example: `  drctl repl status
  drctl repl status --dc dc-b1 -o json`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Replication.GetReplicationStatus(ctx, &drplanev1.GetReplicationStatusRequest{Dc: dc})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderReplStatus(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&dc, "dc", "", "only the pairs this DC is origin or target of, and its backlog")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	return cmd
}

func (a *app) replRequestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "request ORIGIN-DC:REQUEST-ID",
		Short: "Show where one request is: captured, applied or dead-lettered per DC, retries",
		Long: `request shows the ledger record of one replicated request, named by the DC
that captured it and its request id ("<gtid>/<shard>"), as the audit log and
the dead letters name it: its state (PENDING, APPLIED, DEAD_LETTERED), when
it was captured, its outbound sequence, and per target DC when it was applied
or why it was dead-lettered, and how often it was retried.`,
		Example: `  drctl repl request dc-a1:0-101-4711/7
  drctl repl request dc-a1:0-101-4711/7 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			origin, rid, ok := strings.Cut(args[0], ":")
			if !ok || origin == "" || rid == "" {
				return usagef("invalid request %q: want ORIGIN-DC:REQUEST-ID, e.g. dc-a1:0-101-4711/7", args[0])
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Replication.GetRequest(ctx, &drplanev1.GetRequestRequest{OriginDc: origin, RequestId: rid})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderLedgerRecord(w, resp.GetRecord()) })
		}),
	}
}

func (a *app) replDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List and retry the events a DC's collector could not apply",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.replDLQListCmd(), a.replDLQRetryCmd())
	return cmd
}

func (a *app) replDLQListCmd() *cobra.Command {
	var dc, origin string
	var limit int32
	var after uint64
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Long: `list shows the dead letters of one DC (--dc) or of every DC: the events its
collector could not apply (undecodable, unknown table or column, constraint
violation), with their DLQ sequence (what retry takes), origin, request id,
shard and error. At most --limit per DC; when more follow, continue with
--after SEQ.`,
		Example: `  drctl repl dlq list
  drctl repl dlq list --dc dc-b1 --origin dc-a1 --limit 20`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if limit < 1 || limit > maxDLQLimit {
				return usagef("invalid --limit %d: want 1 to %d", limit, maxDLQLimit)
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			dcs := []string{dc}
			if dc == "" {
				if dcs, err = topologyDCs(ctx, c); err != nil {
					return err
				}
			}
			all := &drplanev1.ListDeadLettersResponse{}
			failed := 0
			for _, d := range dcs {
				resp, err := c.Replication.ListDeadLetters(ctx, &drplanev1.ListDeadLettersRequest{
					Dc: d, Limit: limit, OriginDc: origin, AfterSequence: after,
				})
				if err != nil {
					if dc != "" {
						return err
					}
					failed++
					_, line := classify(runError{err})
					fmt.Fprintf(a.stderr, "%s (dc %s)\n", line, d)
					continue
				}
				all.DeadLetters = append(all.DeadLetters, resp.GetDeadLetters()...)
				all.Total += resp.GetTotal()
				all.More = all.GetMore() || resp.GetMore()
			}
			if err := a.print(all, func(w io.Writer) error { return renderDeadLetters(w, all) }); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d DCs not listed", failed, len(dcs))
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dc, "dc", "", "the DC whose dead letters to list (default: every DC)")
	f.StringVar(&origin, "origin", "", "only dead letters from this origin DC")
	f.Int32Var(&limit, "limit", defaultDLQLimit, "at most this many per DC (1 to 1000)")
	f.Uint64Var(&after, "after", 0, "start after this DLQ sequence")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	_ = cmd.RegisterFlagCompletionFunc("origin", a.completeDCs)
	return cmd
}

func (a *app) replDLQRetryCmd() *cobra.Command {
	var dc string
	var all bool
	cmd := &cobra.Command{
		Use:   "retry --dc DC (SEQ... | --all)",
		Short: "Put dead letters back into the DC's inbound stream",
		Long: `retry puts dead letters of one DC back into its inbound stream, where its
collector applies them again (the collector's dedup row keeps an apply
exactly-once), and removes each from the dead-letter stream once it is stored
there. Name them by DLQ sequence (from 'drctl repl dlq list') or take --all
(at most 1000 per call). Fix the cause first — a table or column that is
missing, a constraint — or the events come straight back. Needs role
operator; audited as replication.dlq_retry. Exits 1 when any was not retried.`,
		Example: `  drctl repl dlq retry --dc dc-b1 17 18
  drctl repl dlq retry --dc dc-b1 --all`,
		Args: cobra.ArbitraryArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if dc == "" {
				return usagef("--dc is required: the DC whose dead letters to retry")
			}
			if all == (len(args) > 0) {
				return usagef("give either DLQ sequences or --all")
			}
			req := &drplanev1.RetryDeadLettersRequest{Dc: dc, All: all}
			for _, arg := range args {
				seq, err := strconv.ParseUint(arg, 10, 64)
				if err != nil || seq == 0 {
					return usagef("invalid sequence %q: want a DLQ sequence number from 'drctl repl dlq list'", arg)
				}
				req.Sequences = append(req.Sequences, seq)
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Replication.RetryDeadLetters(ctx, req)
			if err != nil {
				return err
			}
			if err := a.print(resp, func(w io.Writer) error { return renderRetried(w, resp) }); err != nil {
				return err
			}
			if resp.GetFailed() > 0 {
				return fmt.Errorf("%d of %d dead letters not retried", resp.GetFailed(), resp.GetFailed()+resp.GetRetried())
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&dc, "dc", "", "the DC whose dead letters to retry")
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter of the DC")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	return cmd
}

// topologyDCs returns the names of the topology's DCs.
func topologyDCs(ctx context.Context, c *apiclient.Client) ([]string, error) {
	t, err := c.Topology.GetTopology(ctx, &drplanev1.GetTopologyRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(t.GetTopology().GetDcs()))
	for _, dc := range t.GetTopology().GetDcs() {
		out = append(out, dc.GetName())
	}
	return out, nil
}
