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
	// (read_only=0) for breakHold next to its master, as a build that
	// promotes without fencing would: the two-writable check must fail.
	BreakWritableReplica = "writable-replica"
)

// Breaks lists the breaks a drill knows.
var Breaks = []string{BreakWritableReplica}

// breakHold is how long a break lasts: many read_only samples.
const breakHold = time.Second

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
	for _, in := range l.MySQL {
		if in.Name == master {
			continue
		}
		if err := d.mysql.SetReadOnly(ctx, in.Name, false); err != nil {
			return err
		}
		d.say("  break %s: %s writable beside %s for %s", d.o.Break, in.Name, master, breakHold)
		select {
		case <-ctx.Done():
		case <-time.After(breakHold):
		}
		return d.mysql.SetReadOnly(context.WithoutCancel(ctx), in.Name, true)
	}
	return errors.New("no replica to break")
}
