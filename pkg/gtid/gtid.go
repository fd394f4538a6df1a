// Package gtid is MariaDB's global transaction ids and positions as values:
// parsing, printing and comparing them, with no connection to a server.
// Everything in drplane that reads a GTID or a GTID position (the HA agent's
// analysis and failover, the shard map's divergence records, the collector's
// progress) parses it here.
//
// A MariaDB GTID is domain-server-sequence; a position (gtid_slave_pos,
// gtid_binlog_pos, gtid_current_pos) holds at most one GTID per domain.
// Sequences order within a domain only: GTIDs of different domains are not
// comparable.
package gtid

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrBad means a GTID or a GTID position could not be parsed.
var ErrBad = errors.New("gtid: bad GTID position")

// GTID is one MariaDB global transaction id: domain-server-sequence.
type GTID struct {
	Domain   uint32
	ServerID uint32
	Seq      uint64
}

// String renders the GTID as domain-server-seq.
func (g GTID) String() string {
	return fmt.Sprintf("%d-%d-%d", g.Domain, g.ServerID, g.Seq)
}

// Parse parses one GTID such as "0-1-42".
func Parse(s string) (GTID, error) {
	s = strings.TrimSpace(s)
	f := strings.Split(s, "-")
	if len(f) != 3 {
		return GTID{}, fmt.Errorf("%w: %q", ErrBad, s)
	}
	d, err1 := strconv.ParseUint(f[0], 10, 32)
	srv, err2 := strconv.ParseUint(f[1], 10, 32)
	seq, err3 := strconv.ParseUint(f[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return GTID{}, fmt.Errorf("%w: %q: %w", ErrBad, s, err)
	}
	return GTID{Domain: uint32(d), ServerID: uint32(srv), Seq: seq}, nil
}

// Pos is a MariaDB GTID position: at most one GTID per domain, sorted by
// domain.
type Pos []GTID

// ParsePos parses a position such as "0-1-42,1-7-3". The empty string is
// the empty position.
func ParsePos(s string) (Pos, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Pos{}, nil
	}
	seen := map[uint32]bool{}
	var pos Pos
	for _, part := range strings.Split(s, ",") {
		g, err := Parse(part)
		if err != nil {
			return nil, err
		}
		if seen[g.Domain] {
			return nil, fmt.Errorf("%w: domain %d twice in %q", ErrBad, g.Domain, s)
		}
		seen[g.Domain] = true
		pos = append(pos, g)
	}
	sort.Slice(pos, func(i, j int) bool { return pos[i].Domain < pos[j].Domain })
	return pos, nil
}

// String renders the position the way the server prints it.
func (p Pos) String() string {
	parts := make([]string, len(p))
	for i, g := range p {
		parts[i] = g.String()
	}
	return strings.Join(parts, ",")
}

// Seq returns the sequence number for domain and whether p has that domain.
func (p Pos) Seq(domain uint32) (uint64, bool) {
	for _, g := range p {
		if g.Domain == domain {
			return g.Seq, true
		}
	}
	return 0, false
}

// Contains reports whether p is at or past q in every domain of q.
func (p Pos) Contains(q Pos) bool {
	for _, g := range q {
		seq, ok := p.Seq(g.Domain)
		if !ok || seq < g.Seq {
			return false
		}
	}
	return true
}
