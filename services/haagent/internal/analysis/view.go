package analysis

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

// ioYes is Slave_IO_Running of a replica connected to its source.
const ioYes = "Yes"

// view is a cluster prepared for the match functions.
type view struct {
	c Cluster
	// m is the recorded master; hasM is false when there is no record or the
	// record names an instance the cluster does not have.
	m    Instance
	hasM bool
	// members are the instances that are not quarantined, by name.
	members []Instance
}

func newView(c Cluster) view {
	v := view{c: c}
	for _, in := range c.Instances {
		if c.Master != "" && in.Name == c.Master {
			v.m, v.hasM = in, true
		}
		if !in.Quarantined {
			v.members = append(v.members, in)
		}
	}
	sort.SliceStable(v.members, func(i, j int) bool { return v.members[i].Name < v.members[j].Name })
	return v
}

// isM reports whether in is the recorded master.
func (v view) isM(in Instance) bool { return v.hasM && in.Name == v.m.Name }

// others are the members other than the recorded master.
func (v view) others() []Instance {
	out := make([]Instance, 0, len(v.members))
	for _, in := range v.members {
		if !v.isM(in) {
			out = append(out, in)
		}
	}
	return out
}

// masterUp reports whether the recorded master exists and answered.
func (v view) masterUp() bool { return v.hasM && v.m.Status.Reachable }

// replicaOfM reports whether in is configured to replicate from the
// master: by address, or by the server id of the master it last connected
// to (the agent may reach the master under another address than its
// replicas do).
func (v view) replicaOfM(in Instance) bool {
	if !v.hasM || in.Status.Role != state.RoleReplica {
		return false
	}
	if in.Status.SourceHost == v.m.Addr {
		return true
	}
	id := in.Status.SourceServerID
	return id != 0 && id == v.m.Status.ServerID
}

// writable reports whether in answered with read_only=0.
func writable(in Instance) bool { return in.Status.Reachable && !in.Status.ReadOnly }

// sees reports whether in's IO thread is connected to its source.
func sees(in Instance) bool { return in.Status.IOState == ioYes }

// stopped reports whether a replica's IO or SQL thread is not running (an IO
// thread that is connecting is running).
func stopped(in Instance) bool { return in.Status.IOState == "No" || !in.Status.SQLRunning }

// broken reports whether a stopped replica stopped on an error that START
// SLAVE would repeat: an SQL error, or an IO thread that gave up on one.
func broken(in Instance) bool {
	st := in.Status
	return st.SQLErrno != 0 || (st.IOState == "No" && st.IOErrno != 0)
}

// lagging reports whether in is further behind than max (max <= 0: never).
func lagging(in Instance, limit time.Duration) bool {
	sb := in.Status.SecondsBehind
	if limit <= 0 || sb == nil {
		return false
	}
	if *sb > math.MaxInt64/int64(time.Second) {
		return true
	}
	return time.Duration(*sb)*time.Second > limit
}

// writableMembers are the reachable writable members, by name.
func (v view) writableMembers() []Instance {
	var out []Instance
	for _, in := range v.members {
		if writable(in) {
			out = append(out, in)
		}
	}
	return out
}

// masterPos returns the master's last known binlog position and whether it
// is known: always when the master answered, otherwise when the agent kept a
// non-empty one.
func (v view) masterPos() (gtid.Pos, bool) {
	if !v.hasM || (!v.m.Status.Reachable && v.m.Status.GTIDBinlogPos == "") {
		return nil, false
	}
	p, err := gtid.ParsePos(v.m.Status.GTIDBinlogPos)
	if err != nil {
		return nil, false
	}
	return p, true
}

// errantOf returns in's errant GTIDs against the master's position mpos,
// allowing a replica of the master to be ahead with the master's own GTIDs
// (see the package doc). The error is a position that does not parse.
func (v view) errantOf(in Instance, mpos gtid.Pos) (gtid.Pos, error) {
	p, err := gtid.ParsePos(in.Status.GTIDBinlogPos)
	if err != nil {
		return nil, err
	}
	e := Errant(p, mpos)
	if v.replicaOfM(in) {
		e = fromMaster(e, mpos, v.m.Status.ServerID)
	}
	return e, nil
}

// masterVerdict is what the replicas say about an unreachable master.
type masterVerdict int

const (
	verdictNone       masterVerdict = iota // master reachable, or no master
	verdictSeen                            // a replica still receives from it
	verdictNoEvidence                      // no reachable replica of it to ask
	verdictDead                            // every replica reachable and lost it
	verdictDeadSome                        // some replicas unreachable, the rest lost it
)

// unreachableMaster judges an unreachable master holistically, from the
// reachable replicas of it. Instances that do not replicate from it neither
// confirm nor deny.
func (v view) unreachableMaster() (masterVerdict, string) {
	if !v.hasM || v.m.Status.Reachable {
		return verdictNone, ""
	}
	var seeing, lost, down, unrelated []string
	for _, in := range v.others() {
		switch {
		case !in.Status.Reachable:
			down = append(down, in.Name)
		case !v.replicaOfM(in):
			unrelated = append(unrelated, in.Name)
		case sees(in):
			seeing = append(seeing, in.Name)
		default:
			lost = append(lost, in.Name)
		}
	}
	switch {
	case len(seeing) > 0:
		return verdictSeen, "unreachable from the agent, but replicas still receive from it: " + strings.Join(seeing, ", ")
	case len(lost) == 0:
		d := "unreachable, and no reachable replica of it to confirm"
		if len(down) > 0 {
			d += "; unreachable: " + strings.Join(down, ", ")
		}
		if len(unrelated) > 0 {
			d += "; not replicating from it: " + strings.Join(unrelated, ", ")
		}
		return verdictNoEvidence, d
	case len(down) == 0:
		return verdictDead, "unreachable, and every replica lost it: " + strings.Join(lost, ", ")
	}
	return verdictDeadSome, "unreachable; replicas that lost it: " + strings.Join(lost, ", ") +
		"; unreachable replicas: " + strings.Join(down, ", ")
}
