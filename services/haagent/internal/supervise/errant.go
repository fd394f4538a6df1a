package supervise

import (
	"context"
	"fmt"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/services/haagent/internal/analysis"
	"github.com/drplane/drplane/services/haagent/internal/failover"
)

// readFunc reads an instance's positions now (failover.Ops.Read).
type readFunc func(ctx context.Context, addr string) (failover.Position, error)

// confirmErrant re-reads an instance the analysis found errant, then the
// master, in that order, and returns the instance's GTIDs the master lacks.
// The analysis compares observations taken in parallel, so a replica read
// after the master may hold what the master wrote in between; a master's
// binlog only grows, so everything the instance received from it before
// the first read is in the second. Only what survives this ordered
// comparison is errant.
func confirmErrant(ctx context.Context, read readFunc, addr, masterAddr string) (gtid.Pos, error) {
	in, err := read(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("supervise: confirm errant GTIDs: %s: %w", addr, err)
	}
	m, err := read(ctx, masterAddr)
	if err != nil {
		return nil, fmt.Errorf("supervise: confirm errant GTIDs: master %s: %w", masterAddr, err)
	}
	return analysis.Errant(in.Binlog, m.Binlog), nil
}
