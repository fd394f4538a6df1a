package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// City failover wait bounds, as the API enforces them.
const (
	defaultCityFailoverWait = 30 * time.Second
	maxCityFailoverWait     = 300 * time.Second
	// maxListedIDs bounds the request ids a table prints.
	maxListedIDs = 50
)

// failoverDCCmd is `drctl failover dc DC [--accept-loss] --reason R`.
func (a *app) failoverDCCmd() *cobra.Command {
	var reason string
	var acceptLoss bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "dc DC --reason R [--accept-loss]",
		Short: "Fail a lost DC over: flip its shards to their backup DCs at once",
		Long: `dc flips the shards of a DC whose HA agents hold no DC lease (the DC is lost,
or etcd cannot hear it) to their backup DCs, at once and without catch-up: what
the DC wrote and did not ship is lost until it returns (it becomes divergence
then). Use it when the coordinator held the failover for an operator (drctl
failovers list shows HELD: a kill switch, auto_city_failover off, a keyspace's
max_rpo) or could not decide (no other DC alive to confirm the loss). A held
failover goes on; otherwise a new one flips every shard the DC owns.

A shard whose estimated loss window is over its keyspace's max_rpo, or unknown,
is flipped only with --accept-loss. Kill switches and auto_city_failover do
not stop an operator. A DC whose lease is held is refused: evacuate it instead
(no write lost). It waits up to --timeout for the leader and prints the
failover with its loss estimate. Needs an operator token; audited.`,
		Example: `  drctl failover dc dc-a1 --reason "dc-a1 flooded"
  drctl failover dc dc-a1 --accept-loss --reason "dc-a1 lost; budget waived by on-call"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeDCs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if wait < time.Second || wait > maxCityFailoverWait {
				return usagef("invalid --timeout %s: want 1s to %s", wait, maxCityFailoverWait)
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason must not be empty")
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(ctx, wait+switchoverCallMargin)
			defer cancel()
			resp, err := c.CityFailover.FailOverDC(ctx, &drplanev1.FailOverDCRequest{
				Dc: args[0], AcceptLoss: acceptLoss, Reason: reason, TimeoutSeconds: int32(math.Ceil(wait.Seconds())),
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderCityFailover(w, resp.GetFailover()) })
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the DC is failed over (required)")
	cmd.Flags().BoolVar(&acceptLoss, "accept-loss", false, "flip the shards over their keyspace's max_rpo too")
	cmd.Flags().DurationVar(&wait, "timeout", defaultCityFailoverWait, "how long to wait for the leader (1s to 300s)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// cityFailoversListCmd is `drctl failovers list [--dc D]`.
func (a *app) cityFailoversListCmd() *cobra.Command {
	var dc string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List city failovers (whole DCs), newest first",
		Long: `list shows the city failovers, newest first: the DC, the state (DONE, HELD
for an operator, FAILED, or still PENDING/RUNNING), the shards flipped, the
flip time, the loss estimated at flip time (requests the ledger knew were
captured in the lost DC and not applied at the new owners) and, once the DC
returned, the exact loss (what it had committed that never reached them).`,
		Example: `  drctl failovers list
  drctl failovers list --dc dc-a1 -o json`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CityFailover.ListCityFailovers(ctx, &drplanev1.ListCityFailoversRequest{Dc: dc})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderCityFailovers(w, resp) })
		}),
	}
	cmd.Flags().StringVar(&dc, "dc", "", "only this DC")
	_ = cmd.RegisterFlagCompletionFunc("dc", a.completeDCs)
	return cmd
}

// cityFailoversShowCmd is `drctl failovers show ID`.
func (a *app) cityFailoversShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one city failover: its shards, the estimated and the exact loss",
		Long: `show prints one city failover: why the DC was declared lost and by whom, each
shard's new owner, fence and hold, the loss estimated at flip time (request
ids from the ledger, and the loss window), and once the DC returned the exact
loss: every request id and GTID it had committed that never reached the new
owner (each is a divergence entry).`,
		Example: `  drctl failovers show city_failover-20260101T120000.000Z-dc-a1-1a2b3c4d`,
		Args:    cobra.ExactArgs(1),
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CityFailover.GetCityFailover(ctx, &drplanev1.GetCityFailoverRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderCityFailover(w, resp.GetFailover()) })
		}),
	}
}

func cityState(s drplanev1.CityFailoverState) string {
	return strings.TrimPrefix(s.String(), "CITY_FAILOVER_STATE_")
}

// exactCell is the exact loss as a count, or "pending" before the DC
// returned.
func exactCell(f *drplanev1.CityFailover) string {
	if f.GetExact() == nil {
		return "pending"
	}
	return fmt.Sprintf("%d", f.GetExact().GetRequestsTotal())
}

func lagBound(ms int64) string {
	if ms < 0 {
		return "unknown"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func renderCityFailovers(w io.Writer, resp *drplanev1.ListCityFailoversResponse) error {
	var b bytes.Buffer
	if len(resp.GetFailovers()) == 0 {
		b.WriteString("no city failovers\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "ID\tDC\tSTATE\tFLIPPED\tFLIP\tESTIMATE\tLOSS WINDOW\tEXACT\tTRIGGER\tHELD")
	for _, f := range resp.GetFailovers() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\t%s\n", cell(f.GetId()), cell(f.GetDc()), cityState(f.GetState()),
			f.GetShardsFlipped(), f.GetShardsTotal(), time.Duration(f.GetFlipMs())*time.Millisecond, f.GetEstimate().GetRequestsTotal(),
			lagBound(f.GetEstimate().GetMaxLagBoundMs()), exactCell(f), cell(f.GetTrigger()), truncate(orDash(cell(f.GetHeld())), maxErrorWidth))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// ids joins at most maxListedIDs ids, saying how many more there are.
func ids(list []string, total int64) string {
	if len(list) == 0 {
		return "none"
	}
	out := strings.Join(list[:min(len(list), maxListedIDs)], ", ")
	if more := total - int64(min(len(list), maxListedIDs)); more > 0 {
		out += fmt.Sprintf(" (and %d more)", more)
	}
	return out
}

func renderCityFailover(w io.Writer, f *drplanev1.CityFailover) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "city failover %s of %s: %s\n", f.GetId(), f.GetDc(), cityState(f.GetState()))
	fmt.Fprintf(&b, "trigger: %s", cell(f.GetTrigger()))
	if f.GetVerdict() != "" {
		fmt.Fprintf(&b, " (%s: %s; witnesses %s)", f.GetVerdict(), cell(f.GetReason()), orNone(strings.Join(f.GetWitnesses(), ", ")))
	} else if f.GetReason() != "" {
		fmt.Fprintf(&b, " (%s)", cell(f.GetReason()))
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "shards flipped: %d of %d in %s", f.GetShardsFlipped(), f.GetShardsTotal(), time.Duration(f.GetFlipMs())*time.Millisecond)
	if f.GetAcceptLoss() {
		b.WriteString(" (loss accepted)")
	}
	b.WriteByte('\n')
	if f.GetHeld() != "" {
		fmt.Fprintf(&b, "held: %s\n", cell(f.GetHeld()))
	}
	if f.GetError() != "" {
		fmt.Fprintf(&b, "error: %s\n", cell(f.GetError()))
	}
	e := f.GetEstimate()
	fmt.Fprintf(&b, "estimated loss: %d requests (loss window %s): %s\n", e.GetRequestsTotal(), lagBound(e.GetMaxLagBoundMs()),
		ids(e.GetRequestIds(), e.GetRequestsTotal()))
	if x := f.GetExact(); x != nil {
		var list []string
		for _, r := range x.GetRequests() {
			list = append(list, r.GetRequestId()+" ("+r.GetGtid()+")")
		}
		fmt.Fprintf(&b, "exact loss: %d requests: %s\n", x.GetRequestsTotal(), ids(list, x.GetRequestsTotal()))
	} else {
		b.WriteString("exact loss: counted when the DC returns\n")
	}
	if len(f.GetShards()) > 0 {
		b.WriteByte('\n')
		tw := newTable(&b)
		fmt.Fprintln(tw, "KEYSPACE\tSHARD\tFROM\tTO\tFLIPPED\tFENCE\tLOSS WINDOW\tLEDGER MISSING\tHELD")
		for _, s := range f.GetShards() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", cell(s.GetKeyspace()), s.GetShard(), cell(s.GetFromDc()),
				orDash(cell(s.GetToDc())), yesNo(s.GetFlipped()), orDash(cell(s.GetFence())), lagBound(s.GetLagBoundMs()),
				s.GetLedgerMissing(), truncate(orDash(cell(s.GetHeld())), maxErrorWidth))
		}
		tw.Flush()
	}
	_, err := w.Write(b.Bytes())
	return err
}
