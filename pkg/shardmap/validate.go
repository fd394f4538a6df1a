package shardmap

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/drplane/drplane/pkg/topology"
)

// maxFieldErrors bounds the field errors one validation reports; the rest are
// counted in a final entry.
const maxFieldErrors = 50

// ValidationError holds the field errors found in one pass, each naming the
// offending field by its path (for example "shards[3].hi").
type ValidationError struct {
	Errs []*topology.FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		parts[i] = fe.Error()
	}
	return "invalid shard map: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is(err, ErrInvalid) succeed.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

type checker struct {
	errs    []*topology.FieldError
	dropped int
}

func (c *checker) add(field, format string, args ...any) {
	if len(c.errs) >= maxFieldErrors {
		c.dropped++
		return
	}
	c.errs = append(c.errs, &topology.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	errs := c.errs
	if c.dropped > 0 {
		errs = append(errs, &topology.FieldError{Field: "shards", Msg: fmt.Sprintf("%d more errors not shown", c.dropped)})
	}
	return &ValidationError{Errs: errs}
}

// Validate checks m against topo: a valid keyspace name that the topology
// defines, a known function, 1 to MaxShards shards with unique non-negative
// ids, known states, owners and backups that are DCs of the topology, a
// backup different from its owner (and present unless the topology has a
// single DC), and ranges that cover the whole 64-bit space with no gap and
// no overlap, in any order. Every error found is reported, each with its
// field path; the error wraps ErrInvalid. Whether a DC is ACTIVE is not
// checked: a map naming a DC that is down stays valid until it is changed.
func (m Map) Validate(topo topology.Topology) error {
	var c checker
	m.checkStructure(&c)
	if m.Keyspace != "" {
		if _, ok := topo.Keyspace(m.Keyspace); !ok {
			c.add("keyspace", "unknown keyspace %q", m.Keyspace)
		}
	}
	dcs := make(map[string]bool, len(topo.DCs))
	for _, dc := range topo.DCs {
		dcs[dc.Name] = true
	}
	for i, s := range m.Shards {
		f := "shards[" + strconv.Itoa(i) + "]"
		if s.Owner != "" && !dcs[s.Owner] {
			c.add(f+".owner", "unknown DC %q", s.Owner)
		}
		switch {
		case s.Backup == "" && len(topo.DCs) > 1:
			c.add(f+".backup", "must not be empty: the topology has %d DCs", len(topo.DCs))
		case s.Backup != "" && s.Backup != s.Owner && !dcs[s.Backup]:
			c.add(f+".backup", "unknown DC %q", s.Backup)
		}
	}
	return c.err()
}

// check validates what does not need the topology; Compile relies on it.
func (m Map) check() error {
	var c checker
	m.checkStructure(&c)
	return c.err()
}

func (m Map) checkStructure(c *checker) {
	switch {
	case m.Keyspace == "":
		c.add("keyspace", "must not be empty")
	case !topology.ValidName(m.Keyspace):
		c.add("keyspace", "%q may contain only letters, digits, '-' and '_'", m.Keyspace)
	}
	if !m.Function.Valid() {
		c.add("function", "unknown function %q (want HASH or RANGE)", m.Function)
	}
	if m.Revision < 0 {
		c.add("revision", "%d is negative", m.Revision)
	}
	switch {
	case len(m.Shards) == 0:
		c.add("shards", "at least one shard is required")
		return
	case len(m.Shards) > MaxShards:
		c.add("shards", "%d shards, at most %d are allowed", len(m.Shards), MaxShards)
		return
	}
	ids := make(map[int]int, len(m.Shards))
	for i, s := range m.Shards {
		f := "shards[" + strconv.Itoa(i) + "]"
		if s.ID < 0 {
			c.add(f+".id", "%d is negative", s.ID)
		}
		if j, dup := ids[s.ID]; dup {
			c.add(f+".id", "duplicate id %d (also shards[%d])", s.ID, j)
		} else {
			ids[s.ID] = i
		}
		if !s.State.Valid() {
			c.add(f+".state", "unknown state %q (want ACTIVE, FROZEN or MOVING)", s.State)
		}
		if s.Revision < 0 {
			c.add(f+".revision", "%d is negative", s.Revision)
		} else if m.Revision > 0 && s.Revision > m.Revision {
			c.add(f+".revision", "%d is after the map's revision %d", s.Revision, m.Revision)
		}
		if s.Owner == "" {
			c.add(f+".owner", "must not be empty")
		}
		if s.Backup != "" && s.Backup == s.Owner {
			c.add(f+".backup", "must differ from the owner %q", s.Owner)
		}
		if s.FrozenBy != "" && s.State != Frozen {
			c.add(f+".frozen_by", "set on a %s shard; only a FROZEN shard has it", s.State)
		}
		seen := map[string]bool{}
		for j, fe := range s.Fences {
			ff := f + ".fences[" + strconv.Itoa(j) + "]"
			switch {
			case fe.DC == "":
				c.add(ff+".dc", "must not be empty")
			case fe.DC == s.Owner:
				c.add(ff+".dc", "the owner %q cannot be fenced", s.Owner)
			case seen[fe.DC]:
				c.add(ff+".dc", "duplicate fence of %q", fe.DC)
			}
			seen[fe.DC] = true
		}
	}
	checkRanges(c, m.Shards)
}

// bound is a range end: a uint64, or 2^64 when end is set.
type bound struct {
	v   uint64
	end bool
}

func hiBound(s Shard) bound { return bound{v: s.Hi, end: s.Hi == 0} }

func (b bound) String() string {
	if b.end {
		return "2^64"
	}
	return strconv.FormatUint(b.v, 10)
}

func rangeString(s Shard) string {
	return "[" + strconv.FormatUint(s.Lo, 10) + ", " + hiBound(s).String() + ")"
}

// checkRanges reports empty ranges, gaps and overlaps.
func checkRanges(c *checker, shards []Shard) {
	order := make([]int, 0, len(shards))
	for i, s := range shards {
		if s.Hi != 0 && s.Hi <= s.Lo {
			c.add("shards["+strconv.Itoa(i)+"].hi", "range %s is empty: hi must be above lo, or 0 for the end of the space", rangeString(s))
			continue
		}
		order = append(order, i)
	}
	if len(order) == 0 {
		return
	}
	sort.SliceStable(order, func(a, b int) bool { return shards[order[a]].Lo < shards[order[b]].Lo })
	// cursor is the end of the space covered so far, reached by shards[last].
	cursor, last := bound{}, -1
	for _, i := range order {
		s := shards[i]
		f := "shards[" + strconv.Itoa(i) + "]"
		switch {
		case cursor.end || s.Lo < cursor.v:
			c.add(f+".lo", "range %s overlaps shards[%d] %s", rangeString(s), last, rangeString(shards[last]))
		case s.Lo > cursor.v:
			c.add(f+".lo", "gap: [%s, %d) belongs to no shard", cursor, s.Lo)
		}
		if hi := hiBound(s); !cursor.end && (hi.end || hi.v > cursor.v) {
			cursor, last = hi, i
		}
	}
	if !cursor.end {
		c.add("shards", "gap: [%s, 2^64) belongs to no shard", cursor)
	}
}
