package analysis

import "sort"

// Analyze runs every row of the table against c and returns the matches,
// sorted by priority (most urgent first), then code, then instance, after the
// cross-row rules of the package doc. A healthy cluster yields an empty
// slice.
func Analyze(c Cluster) []Analysis {
	v := newView(c)
	var found []Analysis
	for _, p := range Problems() {
		for _, f := range p.eval(v) {
			rec := p.Recovery
			if f.recovery != "" {
				rec = f.recovery
			}
			found = append(found, Analysis{Code: p.Code, Instance: f.instance, Priority: p.Priority,
				Recovery: rec, Description: p.Description, Detail: f.detail})
		}
	}
	q := map[string]bool{}
	for _, in := range c.Instances {
		if in.Quarantined {
			q[in.Name] = true
		}
	}
	return settle(found, q)
}

// followsFailover reports the recoveries that wait for a failover and that
// an instance with errant GTIDs never gets.
func followsFailover(r Recovery) bool {
	return r == RecoveryRepoint || r == RecoveryRejoin || r == RecoveryRestartReplication
}

// settle applies the cross-row rules to the raw matches, given in table
// order, and sorts what remains.
func settle(found []Analysis, quarantined map[string]bool) []Analysis {
	type act struct {
		instance string
		rec      Recovery
	}
	seen := map[act]bool{}
	errant := map[string]bool{}
	failover := false
	kept := make([]Analysis, 0, len(found))
	sort.SliceStable(found, func(i, j int) bool { return found[i].Priority > found[j].Priority })
	for _, a := range found {
		if quarantined[a.Instance] && a.Code != Quarantined {
			continue
		}
		if a.Recovery.action() {
			k := act{a.Instance, a.Recovery}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		errant[a.Instance] = errant[a.Instance] || a.Code == ErrantGTID
		failover = failover || a.Recovery == RecoveryFailover
		kept = append(kept, a)
	}
	out := make([]Analysis, 0, len(kept))
	for _, a := range kept {
		if followsFailover(a.Recovery) && (failover || errant[a.Instance]) {
			continue
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		if out[i].Code != out[j].Code {
			return out[i].Code < out[j].Code
		}
		return out[i].Instance < out[j].Instance
	})
	return out
}
