package ops

import (
	"errors"
	"fmt"
	"strings"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// The pure changes below are what the leader applies, and what every
// coordinator checks a request with before queueing it (against its cached
// state), so that most bad requests are refused at once with the same error
// the leader would record. Their errors are *apierr.Error values naming the
// API request field (owner_dc, backup_dc, shard, state, dc, keyspace).

// Request field names the errors refer to.
const (
	FieldKeyspace = "keyspace"
	FieldShard    = "shard"
	FieldOwner    = "owner_dc"
	FieldBackup   = "backup_dc"
	FieldState    = "state"
	FieldDC       = "dc"
	FieldCluster  = "cluster"
)

func notFound(field, what, name string) *apierr.Error {
	e := apierr.NotFound(what, name)
	e.Field = field
	return e
}

// CheckKeyspace checks that topo defines keyspace.
func CheckKeyspace(topo topology.Topology, keyspace string) (topology.Keyspace, error) {
	if keyspace == "" {
		return topology.Keyspace{}, apierr.InvalidArgument(FieldKeyspace, "keyspace is required")
	}
	ks, ok := topo.Keyspace(keyspace)
	if !ok {
		return topology.Keyspace{}, notFound(FieldKeyspace, "keyspace", keyspace)
	}
	return ks, nil
}

// NoMap is the error for a keyspace whose shard map is not stored.
func NoMap(keyspace string) error {
	return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
		"no shard map is stored for keyspace %q yet", keyspace)
}

func shardOf(m shardmap.Map, id int) (shardmap.Shard, error) {
	s, ok := m.Shard(id)
	if !ok {
		return s, notFound(FieldShard, "shard", fmt.Sprintf("%s/%d", m.Keyspace, id))
	}
	return s, nil
}

func checkDC(topo topology.Topology, field, dc string) error {
	if _, ok := topo.DC(dc); !ok {
		return apierr.InvalidArgument(field, fmt.Sprintf("unknown DC %q", dc))
	}
	return nil
}

// MoveShard returns m with shard p.Shard owned by p.Owner, and the backup DC
// it resolved: p.Backup, or when empty the shard's current backup, or its
// old owner when the current backup becomes the owner. The new map must pass
// shardmap's validation against topo.
func MoveShard(m shardmap.Map, topo topology.Topology, p Params) (shardmap.Map, string, error) {
	cur, err := shardOf(m, p.Shard)
	if err != nil {
		return m, "", err
	}
	if p.Owner == "" {
		return m, "", apierr.InvalidArgument(FieldOwner, "owner_dc is required: the DC that is to own the shard")
	}
	if err := checkDC(topo, FieldOwner, p.Owner); err != nil {
		return m, "", err
	}
	backup := p.Backup
	if backup == "" {
		backup = cur.Backup
		if backup == p.Owner {
			backup = cur.Owner
		}
	}
	if backup == p.Owner {
		return m, "", apierr.InvalidArgument(FieldBackup, fmt.Sprintf("backup_dc %q must differ from owner_dc", backup))
	}
	if backup != "" {
		if err := checkDC(topo, FieldBackup, backup); err != nil {
			return m, "", err
		}
	}
	out, err := shardmap.MoveShard(m, p.Shard, p.Owner, backup)
	if err != nil {
		return m, "", mapError(err)
	}
	if err := out.Validate(topo); err != nil {
		return m, "", mapError(err)
	}
	return out, backup, nil
}

// SetShardState returns m with shard p.Shard in state p.ShardState.
func SetShardState(m shardmap.Map, topo topology.Topology, p Params) (shardmap.Map, error) {
	if !p.ShardState.Valid() {
		return m, apierr.InvalidArgument(FieldState, fmt.Sprintf("unknown shard state %q: want ACTIVE, FROZEN or MOVING", p.ShardState))
	}
	if _, err := shardOf(m, p.Shard); err != nil {
		return m, err
	}
	out, err := shardmap.SetShardState(m, p.Shard, p.ShardState)
	if err != nil {
		return m, mapError(err)
	}
	if err := out.Validate(topo); err != nil {
		return m, mapError(err)
	}
	return out, nil
}

// SetDCState returns topo with DC p.DC in state p.DCState.
func SetDCState(topo topology.Topology, p Params) (topology.Topology, error) {
	if p.DC == "" {
		return topo, apierr.InvalidArgument(FieldDC, "dc is required")
	}
	if !p.DCState.Valid() {
		return topo, apierr.InvalidArgument(FieldState, fmt.Sprintf("unknown DC state %q: want ACTIVE, DRAINING, EVACUATED or DOWN", p.DCState))
	}
	out := topo
	out.DCs = make([]topology.DC, len(topo.DCs))
	copy(out.DCs, topo.DCs)
	found := false
	for i := range out.DCs {
		if out.DCs[i].Name == p.DC {
			out.DCs[i].State = p.DCState
			found = true
		}
	}
	if !found {
		return topo, notFound(FieldDC, "dc", p.DC)
	}
	if err := out.Validate(); err != nil {
		return topo, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the new topology is invalid: "+err.Error())
	}
	return out, nil
}

// CheckScope checks a kill-switch scope's DC and cluster against topo.
func CheckScope(topo topology.Topology, dc, cluster string) error {
	switch {
	case cluster != "" && dc == "":
		return apierr.InvalidArgument(FieldDC, "a cluster kill switch needs the cluster's dc")
	case dc == "":
		return nil
	}
	if _, ok := topo.DC(dc); !ok {
		return notFound(FieldDC, "dc", dc)
	}
	if cluster == "" {
		return nil
	}
	if _, ok := topo.Cluster(dc, cluster); !ok {
		return notFound(FieldCluster, "cluster", dc+"/"+cluster)
	}
	return nil
}

// mapError turns a shardmap error into an INVALID_ARGUMENT naming the
// request field the first field error is about.
func mapError(err error) error {
	field := ""
	var ve *shardmap.ValidationError
	if errors.As(err, &ve) && len(ve.Errs) > 0 {
		switch f := ve.Errs[0].Field; {
		case strings.HasSuffix(f, ".owner"):
			field = FieldOwner
		case strings.HasSuffix(f, ".backup"):
			field = FieldBackup
		case strings.HasSuffix(f, ".state"):
			field = FieldState
		case f == "keyspace":
			field = FieldKeyspace
		}
	}
	e := apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, err.Error())
	e.Field = field
	return e
}
