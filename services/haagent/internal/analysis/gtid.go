package analysis

import (
	"math"
	"math/bits"

	"github.com/drplane/drplane/pkg/gtid"
)

// gtidIn returns the GTID of domain d in p.
func gtidIn(p gtid.Pos, d uint32) (gtid.GTID, bool) {
	for _, g := range p {
		if g.Domain == d {
			return g, true
		}
	}
	return gtid.GTID{}, false
}

// Errant returns the replica's GTIDs, one per domain, that the master lacks:
// those whose sequence number is past the master's in the same domain (or in
// a domain the master does not have), and those at the master's sequence
// number with a different server id. It is empty when there are none.
func Errant(replica, master gtid.Pos) gtid.Pos {
	out := gtid.Pos{}
	for _, g := range replica {
		mg, ok := gtidIn(master, g.Domain)
		if g.Seq > mg.Seq || (ok && g.Seq == mg.Seq && g.ServerID != mg.ServerID) {
			out = append(out, g)
		}
	}
	return out
}

// fromMaster removes from errant the GTIDs past the master's in their
// domain that carry the server id of the master's last GTID there, or the
// master's own server id (masterID, 0 when unknown): a replica of the master
// observed after the master wrote or received them. The master's own id
// matters after a promotion: its last GTID still carries the old master's
// id while its first writes carry its own.
func fromMaster(errant, master gtid.Pos, masterID uint32) gtid.Pos {
	out := gtid.Pos{}
	for _, g := range errant {
		mg, ok := gtidIn(master, g.Domain)
		if ok && g.Seq > mg.Seq && (g.ServerID == mg.ServerID || (masterID != 0 && g.ServerID == masterID)) {
			continue
		}
		out = append(out, g)
	}
	return out
}

// Missing counts the transactions in oldPos beyond newPos, summed over the
// domains (the difference of sequence numbers; a domain newPos lacks counts
// whole), and renders oldPos's GTIDs of those domains. It is the RPO of a
// failover from an old master at oldPos to a new one at newPos.
func Missing(oldPos, newPos gtid.Pos) (count int64, gtids string) {
	var sum uint64
	over := false
	lost := gtid.Pos{}
	for _, g := range oldPos {
		ns, _ := newPos.Seq(g.Domain)
		if g.Seq <= ns {
			continue
		}
		var carry uint64
		sum, carry = bits.Add64(sum, g.Seq-ns, 0)
		over = over || carry != 0
		lost = append(lost, g)
	}
	if over || sum > math.MaxInt64 {
		return math.MaxInt64, lost.String()
	}
	return int64(sum), lost.String()
}

// seqSum is the sum of p's sequence numbers as a 128-bit number.
func seqSum(p gtid.Pos) (hi, lo uint64) {
	for _, g := range p {
		var carry uint64
		lo, carry = bits.Add64(lo, g.Seq, 0)
		hi += carry
	}
	return hi, lo
}

// comparePos orders positions by how advanced they are: +1 when a is ahead
// of b, -1 when behind, 0 when equally advanced. A position that contains the
// other and not the reverse is ahead; incomparable positions are ordered by
// the sum of their sequence numbers.
func comparePos(a, b gtid.Pos) int {
	ab, ba := a.Contains(b), b.Contains(a)
	switch {
	case ab && ba:
		return 0
	case ab:
		return 1
	case ba:
		return -1
	}
	ah, al := seqSum(a)
	bh, bl := seqSum(b)
	switch {
	case ah > bh || (ah == bh && al > bl):
		return 1
	case ah < bh || (ah == bh && al < bl):
		return -1
	}
	return 0
}
