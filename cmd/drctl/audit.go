package main

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Audit search page sizes, as the API enforces them.
const (
	defaultAuditLimit = 50
	maxAuditLimit     = 1000
)

// auditCmd is `drctl audit search`.
func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Search the audit log of API calls and automatic actions",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.auditSearchCmd())
	return cmd
}

func (a *app) auditSearchCmd() *cobra.Command {
	var since, until, pageToken string
	var actors, actions []string
	var limit int32
	cmd := &cobra.Command{
		Use:   "search [QUERY]",
		Short: "Find audit events, newest first",
		Long: `search finds audit events: every mutating API call (allowed or refused),
every call refused for missing or unknown credentials, and every automatic
action (failovers, switchovers, fencing). Newest first.

QUERY uses Elasticsearch's query_string syntax: bare words match any word of
the actor, action, target, parameters or error ("switchover" finds
switchover.request and switchover.run); field:value on the fields time, actor,
action, target, outcome (OK, FAILED, DENIED), error, params, rto_ms and
rpo_transactions; AND, OR, NOT, "phrases", wildcards, ranges. Several
arguments are joined with spaces (bare words are OR'ed).

--since and --until take a duration back from now (1h, 30m) or an RFC 3339
time; since is inclusive, until exclusive. --actor and --action keep exact
values and may be repeated. When more events match than --limit, the table
ends with the token that fetches the next page (--page-token).`,
		Example: `  drctl audit search switchover --since 1h
  drctl audit search 'outcome:DENIED' --since 24h -o json
  drctl audit search --actor token:ops-admin --action killswitch.set --limit 10
  drctl audit search 'target:"dc-a1/main"' --until 2025-03-01T12:00:00Z`,
		Args: cobra.ArbitraryArgs,
		RunE: a.runE(func(ctx context.Context, _ *cobra.Command, args []string) error {
			now := time.Now()
			req := &drplanev1.SearchAuditRequest{
				Query: strings.Join(args, " "), Actor: actors, Action: actions, PageSize: limit, PageToken: pageToken,
			}
			if limit < 1 || limit > maxAuditLimit {
				return usagef("invalid --limit %d: want 1 to %d", limit, maxAuditLimit)
			}
			var err error
			if req.Since, err = timeFlag("since", since, now); err != nil {
				return err
			}
			if req.Until, err = timeFlag("until", until, now); err != nil {
				return err
			}
			if req.Since != nil && req.Until != nil && !req.GetSince().AsTime().Before(req.GetUntil().AsTime()) {
				return usagef("invalid --until: %s is not after --since %s", req.GetUntil().AsTime().Format(time.RFC3339), req.GetSince().AsTime().Format(time.RFC3339))
			}
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Audit.SearchAudit(ctx, req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return renderAudit(w, resp) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only events at or after this: a duration back from now (1h) or an RFC 3339 time")
	f.StringVar(&until, "until", "", "only events before this: a duration back from now or an RFC 3339 time")
	f.StringArrayVar(&actors, "actor", nil, "only events of this actor, e.g. token:ops-admin or haagent:ID (repeatable)")
	f.StringArrayVar(&actions, "action", nil, "only events of this action, e.g. switchover.request (repeatable)")
	f.Int32Var(&limit, "limit", defaultAuditLimit, "at most this many events (1 to 1000)")
	f.StringVar(&pageToken, "page-token", "", "continue a previous search (the token it printed)")
	for _, name := range []string{"since", "until", "actor", "action", "page-token"} {
		_ = cmd.RegisterFlagCompletionFunc(name, cobra.NoFileCompletions)
	}
	return cmd
}

// timeFlag parses --since/--until: empty is no bound, a duration counts
// back from now, anything else must be an RFC 3339 time.
func timeFlag(name, v string, now time.Time) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return nil, usagef("invalid --%s %s: want a positive duration back from now", name, v)
		}
		return timestamppb.New(now.Add(-d)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, usagef("invalid --%s %q: want a duration such as 1h or an RFC 3339 time such as 2025-03-01T12:00:00Z", name, v)
	}
	return timestamppb.New(t), nil
}
