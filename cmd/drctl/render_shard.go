package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// shardState is the state without its enum prefix, e.g. "FROZEN".
func shardState(s drplanev1.ShardState) string {
	if s == drplanev1.ShardState_SHARD_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(s.String(), "SHARD_STATE_")
}

// master is "instance at addr (term n)", or "none recorded".
func master(m *drplanev1.MasterEndpoint) string {
	if m.GetInstance() == "" {
		return "none recorded"
	}
	return fmt.Sprintf("%s at %s (term %d)", cell(m.GetInstance()), orDash(cell(m.GetAddr())), m.GetTerm())
}

// rangeOf renders a shard's range; hi "0" is the end of the space.
func rangeOf(s *drplanev1.Shard) string {
	hi := s.GetHi()
	if hi == "0" {
		hi = "2^64"
	}
	return "[" + s.GetLo() + ", " + hi + ")"
}

// renderRoute writes where a key lives:
//
//	orders key 42 → shard 27 (ACTIVE)
//	  owner dc-a1, backup dc-b1
//	  master dc-a1-db1 at 127.0.0.1:3306 (term 1)
//	  map revision 12, shard revision 12
func renderRoute(w io.Writer, key string, r *drplanev1.Route) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s key %s → shard %d (%s)\n", cell(r.GetKeyspace()), cell(key), r.GetShard(), shardState(r.GetState()))
	fmt.Fprintf(&b, "  owner %s, backup %s\n", orDash(cell(r.GetOwnerDc())), orNone(cell(r.GetBackupDc())))
	fmt.Fprintf(&b, "  master %s\n", master(r.GetMaster()))
	fmt.Fprintf(&b, "  map revision %d, shard revision %d\n", r.GetMapRevision(), r.GetShardRevision())
	_, err := w.Write(b.Bytes())
	return err
}

// renderShards writes a keyspace's routing table: a header, one row per
// shard, then the masters of the keyspace's cluster.
func renderShards(w io.Writer, t *drplanev1.RoutingTable) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "keyspace %s: %d shards, %s, cluster %s, map revision %d\n",
		cell(t.GetKeyspace()), len(t.GetShards()), cell(t.GetFunction()), orDash(cell(t.GetCluster())), t.GetMapRevision())
	masters := map[string]*drplanev1.MasterEndpoint{}
	for _, m := range t.GetMasters() {
		masters[m.GetDc()] = m
	}
	tw := newTable(&b)
	fmt.Fprintln(tw, "SHARD\tRANGE\tOWNER\tBACKUP\tSTATE\tOWNER MASTER\tREVISION")
	for _, s := range t.GetShards() {
		m := "-"
		if mm, ok := masters[s.GetOwnerDc()]; ok && mm.GetInstance() != "" {
			m = cell(mm.GetInstance())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", s.GetId(), rangeOf(s), orDash(cell(s.GetOwnerDc())),
			orDash(cell(s.GetBackupDc())), shardState(s.GetState()), m, s.GetRevision())
	}
	tw.Flush()
	if len(t.GetMasters()) > 0 {
		b.WriteString("masters:\n")
		tw = newTable(&b)
		for _, m := range t.GetMasters() {
			fmt.Fprintf(tw, "  %s\t%s\n", cell(m.GetDc()), master(m))
		}
		tw.Flush()
	}
	_, err := w.Write(b.Bytes())
	return err
}

// renderShard writes one shard with its route.
func renderShard(w io.Writer, resp *drplanev1.GetShardResponse) error {
	var b bytes.Buffer
	s, r := resp.GetShard(), resp.GetRoute()
	fmt.Fprintf(&b, "shard %s/%d (%s)\n", cell(r.GetKeyspace()), s.GetId(), shardState(s.GetState()))
	fmt.Fprintf(&b, "  range %s\n", rangeOf(s))
	fmt.Fprintf(&b, "  owner %s, backup %s\n", orDash(cell(s.GetOwnerDc())), orNone(cell(s.GetBackupDc())))
	fmt.Fprintf(&b, "  master %s\n", master(r.GetMaster()))
	fmt.Fprintf(&b, "  map revision %d, shard revision %d\n", r.GetMapRevision(), s.GetRevision())
	_, err := w.Write(b.Bytes())
	return err
}

// renderMutation writes an applied mutation:
//
//	shard orders/27: owner dc-b1 — applied at revision 40 by leader coord-1
//	  operation op-…
func renderMutation(w io.Writer, what string, m *drplanev1.Mutation) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s — applied at revision %d by leader %s\n", what, m.GetRevision(), orDash(cell(m.GetLeader())))
	fmt.Fprintf(&b, "  operation %s\n", cell(m.GetOperationId()))
	_, err := w.Write(b.Bytes())
	return err
}
