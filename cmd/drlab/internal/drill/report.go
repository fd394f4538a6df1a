package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
)

func zapNop() *zap.Logger { return zap.NewNop() }

// Report is what a drill found.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Steps    []string  `json:"steps"`
	Repeat   int       `json:"repeat"`
	Rate     float64   `json:"rate"`
	Writes   Writes    `json:"writes"`
	Events   []Event   `json:"events"`
	// Summary aggregates the events per kind (p50/p99/max).
	Summary []KindSummary `json:"summary"`
	Checks  []CheckResult `json:"checks"`
	// Passed is true when every check passed.
	Passed bool `json:"passed"`
}

// Writes sums up the writers' attempts.
type Writes struct {
	Attempted int `json:"attempted"`
	Acked     int `json:"acked"`
	Failed    int `json:"failed"`
	// Dropped are ticks that found every writer of the owner DC busy.
	Dropped int `json:"dropped"`
	// Errors counts the failed attempts by kind.
	Errors map[string]int `json:"errors"`
	// Named counts the acknowledged writes whose GTID (request id) the
	// drill read after the commit.
	Named int `json:"named"`
}

// report assembles the report once the writers and the sampler stopped.
func (d *Drill) report() *Report {
	writes := d.writers.Writes()
	r := &Report{Started: d.started, Finished: time.Now(), Steps: d.o.Steps, Repeat: d.o.Repeat, Rate: d.o.Rate,
		Events: d.events, Writes: Writes{Attempted: len(writes), Dropped: d.writers.Dropped(), Errors: map[string]int{}}}
	for _, w := range writes {
		if w.Acked() {
			r.Writes.Acked++
			if w.GTID != "" {
				r.Writes.Named++
			}
		} else {
			r.Writes.Failed++
			r.Writes.Errors[w.Kind]++
		}
	}
	samples := d.sampler.Samples()
	r.Checks = append(r.Checks, CheckTwoWritable(samples), CheckDeposed(writes, samples, d.sampler.Clusters()))
	r.Checks = append(r.Checks, d.checks...)
	r.Summary = Summarize(d.events)
	r.Passed = Verdict(r.Checks)
	return r
}

// Verdict is true when every check passed (and there was one).
func Verdict(checks []CheckResult) bool {
	for _, c := range checks {
		if c.Outcome != Pass {
			return false
		}
	}
	return len(checks) > 0
}

// WriteFile stores the report as JSON (0600).
func (r *Report) WriteFile(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.Round(time.Millisecond).String()
}

// Table writes the report for a terminal.
func (r *Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "DR drill: steps %s × %d, %.0f writes/s, %s\n\n", strings.Join(r.Steps, ","), r.Repeat, r.Rate,
		r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintln(tw, "EVENT\tTARGET\tRTO\tBLOCK\tSHARD BLOCK\tFAILED\tLOST\tSYSTEM RTO\tSYSTEM BLOCK\tSYSTEM RPO\tRESULT")
	for _, e := range r.Events {
		name := fmt.Sprintf("%s#%d", e.Step, e.Round)
		if !e.Available {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\tnot available: %s\n", name, e.Reason)
			continue
		}
		shard := "-"
		if e.Shard != nil && e.Shard.Block.N > 0 {
			shard = ms(e.Shard.Block.Max)
		}
		sysRTO, sysBlock, sysRPO := "-", "-", "-"
		if rec := e.Record; rec != nil {
			sysRTO, sysBlock, sysRPO = ms(rec.RTO), ms(rec.BlockWindow), fmt.Sprint(rec.RPO)
			if rec.RPO < 0 {
				sysRPO = "unknown"
			}
			switch {
			case e.City != nil && e.Step == StepDCLoss:
				sysRPO = "estimate " + sysRPO
			case e.City != nil && e.Step == StepDCReturn:
				sysRPO = "exact " + sysRPO
			}
			if rec.Rewound > 0 {
				sysRPO += fmt.Sprintf(" (+%d shipped, rewound; %d acknowledged)", rec.Rewound, rec.RewoundAcked)
			}
		}
		rto, outcome := ms(e.Outage.RTO), "ok"
		if !e.Outage.Recovered {
			rto = "no recovery"
		}
		if e.Err != "" {
			outcome = e.Err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", name, e.Target, rto, ms(e.Outage.Block), shard, e.Outage.Failed,
			e.LostWrites, sysRTO, sysBlock, sysRPO, outcome)
	}
	if len(r.Summary) > 0 {
		fmt.Fprintln(tw, "\nKIND\tEVENTS\tRTO p50\tp99\tmax\tBLOCK p50\tp99\tmax\tSHARD BLOCK p50\tp99\tmax\tSYSTEM RTO p50\tp99\tmax\tLOST\tSYSTEM RPO")
		for _, s := range r.Summary {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.Kind, s.Events, ms(s.RTO.P50), ms(s.RTO.P99), ms(s.RTO.Max),
				ms(s.Block.P50), ms(s.Block.P99), ms(s.Block.Max), ms(s.ShardBlock.P50), ms(s.ShardBlock.P99), ms(s.ShardBlock.Max),
				ms(s.SystemRTO.P50), ms(s.SystemRTO.P99), ms(s.SystemRTO.Max), s.LostWrites, s.SystemRPO)
		}
	}
	cityTable(tw, r.Events)
	fmt.Fprintf(tw, "\nwrites: %d attempted, %d acknowledged, %d failed, %d not sent (writers busy)\n",
		r.Writes.Attempted, r.Writes.Acked, r.Writes.Failed, r.Writes.Dropped)
	kinds := make([]string, 0, len(r.Writes.Errors))
	for k := range r.Writes.Errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, r.Writes.Errors[k])
	}
	fmt.Fprintln(tw, "\nCHECK\tEVALUATED\tRESULT\tDETAIL")
	for _, g := range groupChecks(r.Checks) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", g.name, g.n, g.outcome, g.detail)
	}
	verdict := "PASS: every check passed"
	if !r.Passed {
		verdict = "FAIL: see the checks above"
	}
	fmt.Fprintf(tw, "\n%s\n", verdict)
	return tw.Flush()
}

type checkGroup struct {
	name, outcome, detail string
	n                     int
}

// groupChecks folds the evaluations of each check into one line: the first
// failure, or the last pass.
func groupChecks(checks []CheckResult) []checkGroup {
	var out []checkGroup
	idx := map[string]int{}
	for _, c := range checks {
		i, ok := idx[c.Name]
		if !ok {
			i = len(out)
			idx[c.Name] = i
			out = append(out, checkGroup{name: c.Name, outcome: Pass})
		}
		g := &out[i]
		g.n++
		if g.outcome == Pass {
			g.detail = c.Detail
			if c.Outcome != Pass {
				g.outcome, g.detail = Fail, "after "+c.After+": "+c.Detail
			}
		}
	}
	return out
}

// cityTable writes, for each DC loss, the system's reports of the loss
// next to the drill's count, by request id.
func cityTable(w io.Writer, events []Event) {
	seen := map[*CityLoss]bool{}
	header := false
	for _, e := range events {
		l := e.City
		if l == nil || seen[l] {
			continue
		}
		seen[l] = true
		if !header {
			fmt.Fprintln(w, "\nDC LOSS\tFAILOVER\tREPORT\tSYSTEM\tDRILL LOST\tNAMED\tIN WINDOW\tDRILL ONLY\tSYSTEM ONLY\tDIVERGENT ROWS")
			header = true
		}
		for _, which := range []string{"estimate", "exact"} {
			rep, ok := l.Reports[which]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", l.DC, l.FailoverID, which, rep.Total, len(l.Drill)+l.Unnamed,
				rep.Matched, rep.InWindow, len(rep.DrillOnly), len(rep.SystemOnly), l.Divergent)
		}
	}
}
