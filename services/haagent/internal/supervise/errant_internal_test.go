package supervise

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/services/haagent/internal/failover"
)

// fakeMaster is a master whose binlog grows by one GTID each time it is
// read, and a replica that holds what the master had at its own read.
type fakeMaster struct {
	seq    uint64
	extra  string // a GTID of the replica's own, if any
	order  []string
	failOn string
}

func (f *fakeMaster) read(_ context.Context, addr string) (failover.Position, error) {
	f.order = append(f.order, addr)
	if addr == f.failOn {
		return failover.Position{}, errors.New("probe timed out")
	}
	f.seq++
	pos := gtid.Pos{{Domain: 0, ServerID: 2, Seq: f.seq}}
	if addr == "replica" && f.extra != "" {
		p, err := gtid.ParsePos(f.extra)
		if err != nil {
			return failover.Position{}, err
		}
		pos = p
	}
	return failover.Position{Binlog: pos, Received: pos, Applied: pos}, nil
}

// TestConfirmErrantReadsTheReplicaFirst: a replica that only holds what the
// master wrote is never errant once it is read before the master, however
// far the master moved in between; a transaction of its own still is.
func TestConfirmErrantReadsTheReplicaFirst(t *testing.T) {
	f := &fakeMaster{seq: 100}
	got, err := confirmErrant(context.Background(), f.read, "replica", "master")
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, []string{"replica", "master"}, f.order)

	own := &fakeMaster{seq: 100, extra: "0-3-500"}
	got, err = confirmErrant(context.Background(), own.read, "replica", "master")
	require.NoError(t, err)
	assert.Equal(t, "0-3-500", got.String())

	// An unreadable master confirms nothing: no quarantine on a guess.
	blind := &fakeMaster{seq: 100, extra: "0-3-500", failOn: "master"}
	_, err = confirmErrant(context.Background(), blind.read, "replica", "master")
	require.Error(t, err)
}
