package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Breaks are deliberate faults a drill can add after each step (Options.
// Break), so that a run on the real lab shows its checks catch what they
// are meant to: a drill with a break must FAIL, naming the violation.
const (
	// BreakWritableReplica makes a replica of the step's DC writable
	// (read_only=0) next to its master, as a build that promotes without
	// fencing would, until a round of the read_only sampler has recorded
	// both writable: the two-writable check must fail.
	BreakWritableReplica = "writable-replica"
)

// Breaks lists the breaks a drill knows.
var Breaks = []string{BreakWritableReplica}

// breakBound bounds how long a break tries to be recorded: the HA agent
// fences the writable replica (then it is made writable again) and a
// loaded machine times reads out, but a round that reads both instances
// writable comes within a few rounds.
const breakBound = 30 * time.Second

// ParseBreak checks a --break value ("" for none).
func ParseBreak(s string) error {
	if s == "" || slices.Contains(Breaks, s) {
		return nil
	}
	return fmt.Errorf("unknown break %q (breaks: %s)", s, strings.Join(Breaks, ","))
}

// breakAfter carries out the drill's break after a step against dc, and
// says what it did.
func (d *Drill) breakAfter(ctx context.Context, dc string) error {
	if d.o.Break != BreakWritableReplica {
		return nil
	}
	master, err := d.mysql.Master(ctx, dc)
	if err != nil {
		return err
	}
	l, _ := d.lab.DC(dc)
	id := ClusterID{dc, d.cluster}
	for _, in := range l.MySQL {
		if in.Name == master {
			continue
		}
		// The break is only a break once the record shows it: a timed
		// sleep could pass between two rounds of samples, or in rounds
		// whose reads of one of the two timed out, and the drill would
		// PASS with a writable replica beside its master.
		deadline := time.Now().Add(breakBound)
		rounds := 0
		var last Sample
		for {
			if err := d.mysql.SetReadOnly(ctx, in.Name, false); err != nil {
				return err
			}
			r := d.sampler.Next(ctx)
			if r == nil {
				_ = d.mysql.SetReadOnly(context.WithoutCancel(ctx), in.Name, true)
				return errors.New("the sampler stopped")
			}
			rounds++
			last = r[id]
			if len(last.Writable) > 1 {
				break
			}
			if time.Now().After(deadline) {
				_ = d.mysql.SetReadOnly(context.WithoutCancel(ctx), in.Name, true)
				return fmt.Errorf("%s writable beside %s: no round of samples saw both writable in %s (%d rounds, the last saw writable %v, read-only %v)",
					in.Name, master, breakBound, rounds, last.Writable, last.ReadOnly)
			}
		}
		d.say("  break %s: %s writable beside %s, recorded by the sampler at %s (round %d)", d.o.Break, in.Name, master,
			last.At.Format("15:04:05.000"), rounds)
		return d.mysql.SetReadOnly(context.WithoutCancel(ctx), in.Name, true)
	}
	return errors.New("no replica to break")
}
