package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// divergenceCmd is `drctl divergence list|show`: the changes a DC captured
// for a shard after it handed the shard off, refused and kept.
func (a *app) divergenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "divergence",
		Short: "List the changes refused because their DC no longer owned the shard",
		Long: `A change a DC captured for a shard after it handed the shard off (a write that
reached the old owner through a stale router, or that a DC took while it was
cut off) is never applied over the new owner's data: reship or the collector
refuses it and records it here, once, audited. So is a change its DC shipped
and then lost in a lossy failover (kind discarded). An operator resolves each
entry: discard it, or reapply it at the shard's owner. Reads need a viewer
token, resolve an operator token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.divergenceListCmd(), a.divergenceShowCmd(), a.divergenceResolveCmd())
	return cmd
}

func (a *app) divergenceListCmd() *cobra.Command {
	var origin, keyspace string
	var limit int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List divergence entries, newest first",
		Example: `  drctl divergence list
  drctl divergence list --origin dc-a1 --keyspace orders -o json`,
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
			resp, err := c.Divergence.ListDivergence(ctx, &drplanev1.ListDivergenceRequest{OriginDc: origin, Keyspace: keyspace, PageSize: limit})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderDivergences(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&origin, "origin", "", "only changes this DC captured")
	cmd.Flags().StringVar(&keyspace, "keyspace", "", "only this keyspace")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many (1 to 1000)")
	_ = cmd.RegisterFlagCompletionFunc("origin", a.completeDCs)
	return cmd
}

func (a *app) divergenceShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one divergence entry with the refused change (ID is ORIGIN-DC:REQUEST-ID)",
		Example: `  drctl divergence show dc-a1:1-101-42/7`,
		Args:    cobra.ExactArgs(1),
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Divergence.GetDivergence(ctx, &drplanev1.GetDivergenceRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderDivergence(w, resp) })
		}),
	}
}

func (a *app) divergenceResolveCmd() *cobra.Command {
	var (
		action, reason string
		wait           bool
		waitFor        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "resolve ID --action discard|reapply --reason R [--wait]",
		Short: "Resolve a divergence entry: discard the change, or reapply it at the shard's owner",
		Long: `Records an operator's decision on an OPEN (or CONFLICT) entry, through the
coordinator leader, audited (divergence.resolve: who, the entry, the action,
the reason).

  discard  the change stays out of the shard's owner for good (DISCARDED).
  reapply  the owner's collector applies the change, only if every row it
           touches is still as the change found it at its origin; otherwise
           nothing is written and the entry goes CONFLICT (the owner holds
           newer data), to be discarded or repaired by hand.

A reapply answers REPLAYING at once; --wait follows the entry until the
owner's collector finished it (REPLAYED or CONFLICT, up to --wait-timeout).
An entry resolved already is refused (FAILED_PRECONDITION). Needs an operator
token.`,
		Example: `  drctl divergence resolve dc-a1:1-101-42/7 --action discard --reason "superseded by the new owner's writes"
  drctl divergence resolve dc-a1:1-101-43/7 --action reapply --reason "customer order lost in the failover" --wait`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			switch action {
			case "discard", "reapply":
			default:
				return usagef("invalid --action %q: want discard or reapply", action)
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason must not be empty")
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Divergence.ResolveDivergence(ctx, &drplanev1.ResolveDivergenceRequest{Id: args[0], Action: action, Reason: reason})
			if err != nil {
				return err
			}
			if wait && resp.GetEntry().GetState() == drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING {
				e, err := waitReplayed(ctx, c.Divergence, args[0], waitFor)
				if err != nil {
					return err
				}
				resp.Entry = e
			}
			return a.print(resp, func(w io.Writer) error { return renderResolved(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&action, "action", "", "discard or reapply (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, audited)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow a reapply until the owner's collector finished it")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", time.Minute, "how long --wait follows it")
	_ = cmd.MarkFlagRequired("action")
	_ = cmd.MarkFlagRequired("reason")
	_ = cmd.RegisterFlagCompletionFunc("action", cobra.FixedCompletions([]string{"discard", "reapply"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// replayPoll is how often --wait reads the entry.
const replayPoll = 250 * time.Millisecond

// waitReplayed reads the entry until it is no longer REPLAYING, for at most
// limit.
func waitReplayed(ctx context.Context, c drplanev1.DivergenceServiceClient, id string, limit time.Duration) (*drplanev1.Divergence, error) {
	deadline := time.Now().Add(limit)
	t := time.NewTicker(replayPoll)
	defer t.Stop()
	for {
		resp, err := c.GetDivergence(ctx, &drplanev1.GetDivergenceRequest{Id: id})
		if err != nil {
			return nil, err
		}
		e := resp.GetEntry()
		if e.GetState() != drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING {
			return e, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("divergence %s is still REPLAYING after %s: %s's collector has not finished it (is it running?)",
				id, limit, e.GetResolution().GetTargetDc())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// renderResolved writes what a resolution did.
func renderResolved(w io.Writer, resp *drplanev1.ResolveDivergenceResponse) error {
	e := resp.GetEntry()
	r := e.GetResolution()
	var b bytes.Buffer
	fmt.Fprintf(&b, "divergence %s %s by %s (operation %s)\n", cell(e.GetId()), divergenceState(e.GetState()),
		cell(r.GetResolvedBy()), cell(resp.GetOperationId()))
	switch e.GetState() {
	case drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYING:
		fmt.Fprintf(&b, "  %s's collector reapplies it if its rows are unchanged; follow with: drctl divergence show %s\n",
			cell(r.GetTargetDc()), cell(e.GetId()))
	case drplanev1.DivergenceState_DIVERGENCE_STATE_REPLAYED, drplanev1.DivergenceState_DIVERGENCE_STATE_CONFLICT:
		fmt.Fprintf(&b, "  reapply at %s: %s%s\n", cell(r.GetTargetDc()), orDash(cell(r.GetDetail())), replayGTID(r))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// resolver is who resolved an entry, "-" when nobody did.
func resolver(e *drplanev1.Divergence) string {
	if e.GetResolution() == nil {
		return "-"
	}
	return orDash(cell(e.GetResolution().GetResolvedBy()))
}

func divergenceState(s drplanev1.DivergenceState) string {
	if s == drplanev1.DivergenceState_DIVERGENCE_STATE_UNSPECIFIED {
		return "-"
	}
	return trimEnum(s.String(), "DIVERGENCE_STATE_")
}

// kindDiscarded is the kind of an entry its origin shipped and then lost.
const kindDiscarded = "discarded"

// divergenceKind is an entry's kind, "fenced" when the server sent none.
func divergenceKind(e *drplanev1.Divergence) string {
	if e.GetKind() == "" {
		return "fenced"
	}
	return cell(e.GetKind())
}

// renderDivergences writes one row per entry and how many matched.
func renderDivergences(w io.Writer, resp *drplanev1.ListDivergenceResponse) error {
	var b bytes.Buffer
	if len(resp.GetEntries()) == 0 {
		b.WriteString("no divergence recorded: no change was refused after a handoff or lost by a failover after it was shipped\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	fmt.Fprintf(&b, "%d entries, newest first, %d shown\n", resp.GetTotal(), len(resp.GetEntries()))
	tw := newTable(&b)
	fmt.Fprintln(tw, "ID\tSTATE\tRESOLVER\tKIND\tSHARD\tORIGIN\tOWNER\tGTID\tROWS\tCOMMITTED\tDETECTED\tBY\tFENCE\tOPERATION")
	for _, e := range resp.GetEntries() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", cell(e.GetId()), divergenceState(e.GetState()),
			resolver(e), divergenceKind(e),
			cell(e.GetKeyspace()), e.GetShard(), cell(e.GetOriginDc()), cell(e.GetOwnerDc()), cell(e.GetGtid()), e.GetRows(),
			when(e.GetCommitTime()), when(e.GetDetectedAt()), cell(e.GetDetectedBy()), orDash(cell(e.GetFenceWatermark())),
			orDash(cell(e.GetFenceOperationId())))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// renderDivergence writes one entry and a line per refused row.
func renderDivergence(w io.Writer, resp *drplanev1.GetDivergenceResponse) error {
	var b bytes.Buffer
	e := resp.GetEntry()
	if divergenceKind(e) == kindDiscarded {
		fmt.Fprintf(&b, "divergence %s %s: %s/%d, shipped by %s, then lost there by failover %s (other DCs may hold it; owner %s)\n",
			cell(e.GetId()), divergenceState(e.GetState()), cell(e.GetKeyspace()), e.GetShard(), cell(e.GetOriginDc()),
			orDash(cell(e.GetFailoverId())), cell(e.GetOwnerDc()))
	} else {
		fmt.Fprintf(&b, "divergence %s %s: %s/%d, captured by %s after it handed the shard to %s\n", cell(e.GetId()),
			divergenceState(e.GetState()), cell(e.GetKeyspace()), e.GetShard(), cell(e.GetOriginDc()), cell(e.GetOwnerDc()))
	}
	fmt.Fprintf(&b, "  GTID %s, %d rows, committed %s; refused by %s at %s\n", cell(e.GetGtid()), e.GetRows(), when(e.GetCommitTime()),
		cell(e.GetDetectedBy()), when(e.GetDetectedAt()))
	fmt.Fprintf(&b, "  fence: watermark %s of operation %s\n", orDash(cell(e.GetFenceWatermark())), orDash(cell(e.GetFenceOperationId())))
	if r := e.GetResolution(); r != nil {
		fmt.Fprintf(&b, "  resolved: %s by %s at %s (operation %s): %s\n", cell(r.GetAction()), cell(r.GetResolvedBy()),
			when(r.GetResolvedAt()), cell(r.GetOperationId()), cell(r.GetReason()))
		if r.GetAction() == "reapply" {
			fmt.Fprintf(&b, "  reapply at %s: %s%s\n", cell(r.GetTargetDc()), orDash(cell(r.GetDetail())), replayGTID(r))
		}
	}
	ch := resp.GetChange()
	if ch == nil {
		b.WriteString("  the refused change was not kept\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "  OP\tTABLE\tKEY")
	for _, r := range ch.GetRows() {
		var key []string
		for _, c := range r.GetKey() {
			key = append(key, columnText(c))
		}
		fmt.Fprintf(tw, "  %s\t%s.%s\t%s\n", trimEnum(r.GetOp().String(), "ROW_OP_"), cell(ch.GetSchema()), cell(ch.GetTable()), cell(strings.Join(key, ", ")))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

func replayGTID(r *drplanev1.DivergenceResolution) string {
	if r.GetReplayGtid() == "" {
		return ""
	}
	return " (GTID " + cell(r.GetReplayGtid()) + ", " + when(r.GetFinishedAt()) + ")"
}

// trimEnum is an enum value's name without its prefix.
func trimEnum(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

// columnText renders a key column as name=value.
func columnText(c *drplanev1.Column) string {
	v := c.GetValue()
	var s string
	switch k := v.GetKind().(type) {
	case *drplanev1.Value_Null:
		s = "NULL"
	case *drplanev1.Value_Int:
		s = strconv.FormatInt(k.Int, 10)
	case *drplanev1.Value_Uint:
		s = strconv.FormatUint(k.Uint, 10)
	case *drplanev1.Value_Float:
		s = strconv.FormatFloat(k.Float, 'g', -1, 64)
	case *drplanev1.Value_Text:
		s = strconv.Quote(k.Text)
	case *drplanev1.Value_Raw:
		s = fmt.Sprintf("0x%x", k.Raw)
	default:
		s = "?"
	}
	return c.GetName() + "=" + s
}
