package mysqld

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// KillConnections kills every client connection except the caller's own,
// the server's internal threads, the binlog dump threads that feed
// replicas (killing one mid-event can stop the replica's IO thread with
// error 1595 instead of letting it reconnect) and the sessions of the
// spared accounts. The
// killed clients see the connection drop; none of them is told its
// statement succeeded (KILL QUERY would report a waiting commit as done).
// It returns how many connections it killed; a connection that ended on
// its own before the KILL is not an error.
func KillConnections(ctx context.Context, db *sql.DB, spared ...string) (int, error) {
	q := `SELECT ID FROM information_schema.PROCESSLIST
WHERE ID <> CONNECTION_ID()
  AND USER NOT IN ('system user', 'event_scheduler', '')
  AND COMMAND NOT IN ('Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker', 'Binlog Dump', 'Binlog Dump GTID')`
	if len(spared) > 0 {
		quoted := make([]string, len(spared))
		for i, u := range spared {
			quoted[i] = quoteString(u)
		}
		q += " AND USER NOT IN (" + strings.Join(quoted, ", ") + ")"
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("mysqld: list connections: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("mysqld: list connections: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("mysqld: list connections: %w", err)
	}
	killed := 0
	for _, id := range ids {
		_, err := db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10))
		switch {
		case err == nil:
			killed++
		case ErrorNumber(err) == errnoNoSuchThread:
		default:
			return killed, fmt.Errorf("mysqld: kill connection %d: %w", id, err)
		}
	}
	return killed, nil
}
