package drill

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/shardmap"
)

func itoa(n int) string { return strconv.Itoa(n) }

// CheckLostWrites reports every acknowledged write missing from a DC.
// present holds, per DC, the drill ids that DC's master holds; excused are
// the ids the system itself reported lost (the RPO of a DC loss), which
// must then be missing from exactly the DCs that reported them.
func CheckLostWrites(after string, acked []Write, present map[string]map[int64]bool, excused map[int64]bool) CheckResult {
	dcs := make([]string, 0, len(present))
	for dc := range present {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	var bad []string
	lost := 0
	for _, dc := range dcs {
		have := present[dc]
		var missing []int64
		for _, w := range acked {
			if !have[w.ID] && !excused[w.ID] {
				missing = append(missing, w.ID)
			}
		}
		lost += len(missing)
		if len(missing) > 0 {
			bad = append(bad, fmt.Sprintf("%s lacks %d acknowledged writes, e.g. id %d", dc, len(missing), missing[0]))
		}
	}
	return result(NameLost, after, bad, fmt.Sprintf("%d acknowledged writes present in all %d DCs", len(acked), len(dcs)))
}

// CheckTwoWritable reports every sample in which more than one instance of
// a cluster answered read_only=0.
func CheckTwoWritable(samples map[ClusterID][]Sample) CheckResult {
	var bad []string
	n := 0
	for _, id := range sortedClusters(samples) {
		for _, s := range samples[id] {
			n++
			if len(s.Writable) > 1 {
				bad = append(bad, fmt.Sprintf("%s at %s: writable %s", id, s.At.Format("15:04:05.000"), strings.Join(s.Writable, ", ")))
			}
		}
	}
	r := result(NameTwoWritable, "run", bad, fmt.Sprintf("%d samples of read_only, at most one writable instance in each", n))
	r.Samples = n
	return r
}

// epoch is a span in which one instance was its cluster's master as the
// samples saw it: it became writable after lo and was first seen writable
// (alone) at hi. lo is when the last sample began that showed the instance
// was not the master: one in which it answered read_only=1, or in which
// another instance answered read_only=0. A sample in which the instance did
// not answer (a read timed out under load, the instance was down) says
// nothing of it and does not move lo: taking it as "not yet master" dated a
// new master's promotion after its first acknowledgements.
type epoch struct {
	instance string
	lo, hi   time.Time
}

// epochs turns a cluster's samples into its succession of masters.
func epochs(samples []Sample) []epoch {
	var out []epoch
	// When the last sample began in which each instance answered
	// read-only, and in which each answered writable.
	readOnly, writable := map[string]time.Time{}, map[string]time.Time{}
	cur := ""
	for _, s := range samples {
		if len(s.Writable) == 1 && s.Writable[0] != cur {
			cur = s.Writable[0]
			lo := readOnly[cur]
			for in, t := range writable {
				if in != cur && t.After(lo) {
					lo = t
				}
			}
			out = append(out, epoch{instance: cur, lo: lo, hi: s.At})
		}
		// A sample's read of one instance may end long before its slowest
		// read (a paused instance times out): only its start bounds them.
		from := s.From
		if from.IsZero() {
			from = s.At
		}
		for _, in := range s.ReadOnly {
			readOnly[in] = from
		}
		for _, in := range s.Writable {
			writable[in] = from
		}
	}
	return out
}

// CheckDeposed reports every write acknowledged by an instance after
// another instance of its cluster had been seen writable (the write began
// after the new master's promotion was observed) and before the instance
// could have become master again. cluster maps an instance to its cluster.
func CheckDeposed(writes []Write, samples map[ClusterID][]Sample, cluster map[string]ClusterID) CheckResult {
	eps := make(map[ClusterID][]epoch, len(samples))
	for id, s := range samples {
		eps[id] = epochs(s)
	}
	var bad []string
	n := 0
	for _, w := range writes {
		if !w.Acked() || w.Instance == "" {
			continue
		}
		n++
		es := eps[cluster[w.Instance]]
		// The last epoch surely begun before the write began.
		i := sort.Search(len(es), func(i int) bool { return es[i].hi.After(w.Start) }) - 1
		if i < 0 || es[i].instance == w.Instance {
			continue
		}
		// Did the instance become master again before the ack?
		again := false
		for _, e := range es[i+1:] {
			if e.instance == w.Instance && e.lo.Before(w.Ack) {
				again = true
				break
			}
		}
		if !again {
			bad = append(bad, fmt.Sprintf("write %d (shard %d) acknowledged by %s at %s, but %s was master since %s",
				w.ID, w.Shard, w.Instance, w.Ack.Format("15:04:05.000"), es[i].instance, es[i].hi.Format("15:04:05.000")))
		}
	}
	return result(NameDeposed, "run", bad, fmt.Sprintf("%d acknowledged writes, each by its cluster's master of the moment", n))
}

// CheckConverged reports DCs whose copy of the table differs from the
// others, or could not be read. digests holds one entry per DC (its
// master's copy) from the last attempt; took is how long convergence took
// (or the bound that ran out).
func CheckConverged(after string, digests []Digest, took time.Duration) CheckResult {
	var bad []string
	for _, d := range digests {
		if d.Err != "" {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", d.DC, d.Instance, d.Err))
		}
	}
	if len(bad) == 0 && len(digests) > 0 {
		ref := digests[0]
		for _, d := range digests[1:] {
			if d.Rows != ref.Rows || d.Sum != ref.Sum {
				bad = append(bad, fmt.Sprintf("%s has %d rows (checksum %s), %s has %d (%s) after %s",
					d.DC, d.Rows, d.Sum, ref.DC, ref.Rows, ref.Sum, took.Round(time.Millisecond)))
			}
		}
	}
	if len(digests) == 0 {
		bad = append(bad, "no DC could be read")
	}
	rows := int64(0)
	if len(digests) > 0 {
		rows = digests[0].Rows
	}
	return result(NameConverge, after, bad, fmt.Sprintf("%d DCs equal (%d rows) after %s", len(digests), rows, took.Round(time.Millisecond)))
}

// CheckDuplicates reports every shard whose counter differs from the number
// of its drill rows in a DC.
func CheckDuplicates(after string, counters []Counter) CheckResult {
	var bad []string
	for _, c := range counters {
		if c.Value != c.Rows {
			bad = append(bad, fmt.Sprintf("%s shard %d: counter %d but %d rows (a transaction applied twice or in part)", c.DC, c.Shard, c.Value, c.Rows))
		}
	}
	return result(NameDuplicate, after, bad, fmt.Sprintf("%d shard counters equal their row counts", len(counters)))
}

// CheckOwners reports shards without exactly one live owner in the shard
// map, and shards whose owner the DCs' routers disagree on. routed maps a
// DC to the owner its router reports per shard; live lists the DCs that
// may own shards.
func CheckOwners(after string, m shardmap.Map, routed map[string]map[int]string, live []string) CheckResult {
	var bad []string
	seen := map[int]int{}
	for _, s := range m.Shards {
		seen[s.ID]++
		switch {
		case s.Owner == "":
			bad = append(bad, fmt.Sprintf("shard %d has no owner", s.ID))
		case !slices.Contains(live, s.Owner):
			bad = append(bad, fmt.Sprintf("shard %d is owned by %s, which is not a live DC", s.ID, s.Owner))
		case s.State != shardmap.Active:
			bad = append(bad, fmt.Sprintf("shard %d is %s at %s", s.ID, s.State, s.Owner))
		}
		for dc, owners := range routed {
			if o, ok := owners[s.ID]; ok && o != s.Owner {
				bad = append(bad, fmt.Sprintf("shard %d: the router of %s routes to %s, the shard map says %s", s.ID, dc, o, s.Owner))
			}
		}
	}
	for id, n := range seen {
		if n > 1 {
			bad = append(bad, fmt.Sprintf("shard %d appears %d times in the map", id, n))
		}
	}
	sort.Strings(bad)
	return result(NameOwner, after, bad, fmt.Sprintf("%d shards, each with one owner, the routers of %d DCs agree", len(m.Shards), len(routed)))
}

func sortedClusters[V any](m map[ClusterID]V) []ClusterID {
	ids := make([]ClusterID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids
}
