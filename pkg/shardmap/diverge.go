package shardmap

import "github.com/drplane/drplane/pkg/gtid"

// Diverged reports whether a change that origin captured for shard s with
// MariaDB GTID id must be refused as divergence: origin handed the shard
// off (it has a fence and is not the owner) and the change is not covered
// by the fence (the fence has no watermark — a forced move —, or id is
// after the watermark in its domain, or in a domain the watermark does not
// have). Changes of the owner, and of DCs that never handed the shard off,
// never diverge. The fence is returned with the verdict. An id that does
// not parse diverges (it cannot be shown to be covered).
func Diverged(s Shard, origin, id string) (Fence, bool) {
	if origin == s.Owner {
		return Fence{}, false
	}
	f, ok := s.FenceOf(origin)
	if !ok {
		return f, false
	}
	if f.Watermark == "" {
		return f, true
	}
	wm, err := gtid.ParsePos(f.Watermark)
	if err != nil {
		return f, true
	}
	g, err := gtid.ParsePos(id)
	if err != nil || len(g) != 1 {
		return f, true
	}
	return f, !wm.Contains(g)
}
