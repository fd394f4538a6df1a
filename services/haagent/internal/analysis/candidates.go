package analysis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

// Candidate is an instance that may be promoted, with the position it has
// received: its GTIDIOPos when set, else its GTIDCurrentPos.
type Candidate struct {
	Instance Instance
	Pos      gtid.Pos
}

// Candidates returns the instances eligible for promotion, best first, and
// the reason every other instance of the cluster was left out, by name.
//
// Eligible: reachable, not the recorded master, not NoMaster, not
// Quarantined, a replica (Role REPLICA), no SQL error, and no errant GTIDs
// against the master's last known binlog position (checked only when it is
// known). A replica lagging more than c.MaxLag is left out only when
// another eligible replica that does not lag has received everything it
// has: the most advanced replica is always a candidate, however far its SQL
// thread is behind (the promotion waits for its relay log), so a lag never
// makes a promotion lose what that replica received. Order: the most
// advanced received position (see comparePos), then Priority (higher
// first), then Name.
func Candidates(c Cluster) (ok []Candidate, excluded map[string]string) {
	return newView(c).candidates()
}

func (v view) candidates() ([]Candidate, map[string]string) {
	mpos, mknown := v.masterPos()
	var fresh, slow []Candidate
	excluded := map[string]string{}
	for _, in := range v.c.Instances {
		pos, why := v.eligible(in, mpos, mknown)
		switch {
		case why != "":
			excluded[in.Name] = why
		case lagging(in, v.c.MaxLag):
			slow = append(slow, Candidate{Instance: in, Pos: pos})
		default:
			fresh = append(fresh, Candidate{Instance: in, Pos: pos})
		}
	}
	ok := append([]Candidate{}, fresh...)
	for _, s := range slow {
		covered := ""
		for _, f := range fresh {
			if f.Pos.Contains(s.Pos) {
				covered = f.Instance.Name
				break
			}
		}
		if covered == "" {
			ok = append(ok, s)
			continue
		}
		excluded[s.Instance.Name] = fmt.Sprintf("lagging %ds behind, more than %s, and %s has received all it has",
			*s.Instance.Status.SecondsBehind, v.c.MaxLag, covered)
	}
	sort.SliceStable(ok, func(i, j int) bool {
		if c := comparePos(ok[i].Pos, ok[j].Pos); c != 0 {
			return c > 0
		}
		if ok[i].Instance.Priority != ok[j].Instance.Priority {
			return ok[i].Instance.Priority > ok[j].Instance.Priority
		}
		return ok[i].Instance.Name < ok[j].Instance.Name
	})
	return ok, excluded
}

// eligible returns in's received position, or why it cannot be promoted.
// Lag is judged by the caller.
func (v view) eligible(in Instance, mpos gtid.Pos, mknown bool) (gtid.Pos, string) {
	st := in.Status
	switch {
	case v.isM(in):
		return nil, "is the recorded master"
	case in.Quarantined:
		return nil, "quarantined"
	case in.NoMaster:
		return nil, "marked no-master"
	case !st.Reachable:
		return nil, "unreachable"
	case st.Role != state.RoleReplica:
		return nil, fmt.Sprintf("not a replica (role %s)", st.Role)
	case st.SQLErrno != 0:
		return nil, fmt.Sprintf("SQL thread error %d", st.SQLErrno)
	}
	recv := st.GTIDIOPos
	if recv == "" {
		recv = st.GTIDCurrentPos
	}
	pos, err := gtid.ParsePos(recv)
	if err != nil {
		return nil, "unreadable received position: " + err.Error()
	}
	if mknown {
		e, err := v.errantOf(in, mpos)
		if err != nil {
			return nil, "unreadable binlog position: " + err.Error()
		}
		if len(e) > 0 {
			return nil, fmt.Sprintf("errant GTIDs %s (master at %s)", e, mpos)
		}
	}
	return pos, ""
}

// exclusions renders the reasons, by name, leaving out the recorded master.
func (v view) exclusions(excluded map[string]string) string {
	names := make([]string, 0, len(excluded))
	for n := range excluded {
		if !v.hasM || n != v.m.Name {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no other instance"
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + excluded[n]
	}
	return strings.Join(parts, "; ")
}
