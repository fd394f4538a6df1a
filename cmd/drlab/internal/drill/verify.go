package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/labfile"
)

// MySQL reads the lab's instances directly, as the checks need: the app
// user for data and read_only, root (its password from the instance's
// directory) for replication status.
type MySQL struct {
	lab   *labfile.Lab
	table string
	app   map[string]*sql.DB // by instance
	root  map[string]*sql.DB
	dcOf  map[string]string
	addr  map[string]string
	// down are the DCs a dc-loss step took away: left out of the reads
	// until they return. exclude are drill rows left out of the checksums
	// and counters (the rows a DC loss left behind, see divergent).
	down    map[string]bool
	exclude map[int64]bool
}

// NewMySQL opens handles to every instance (lazily connected).
func NewMySQL(lab *labfile.Lab, ks labfile.Keyspace) (*MySQL, error) {
	m := &MySQL{lab: lab, table: "`" + ks.Database + "`.`" + ks.Table + "`", app: map[string]*sql.DB{}, root: map[string]*sql.DB{},
		dcOf: map[string]string{}, addr: map[string]string{}, down: map[string]bool{}}
	for _, dc := range lab.DCs {
		for _, in := range dc.MySQL {
			db, err := openApp(dc.AppUser, dc.AppPassword, ks.Database, in.Addr, 5*time.Second)
			if err != nil {
				m.Close()
				return nil, err
			}
			db.SetMaxOpenConns(4)
			m.app[in.Name], m.dcOf[in.Name], m.addr[in.Name] = db, dc.Name, in.Addr
			if pw, err := os.ReadFile(filepath.Join(lab.Drlab.Dir, "mysql", in.Name, "root-password")); err == nil {
				if db, err := openApp("root", strings.TrimSpace(string(pw)), "", in.Addr, 5*time.Second); err == nil {
					db.SetMaxOpenConns(2)
					m.root[in.Name] = db
				}
			}
		}
	}
	return m, nil
}

// Close closes every handle.
func (m *MySQL) Close() {
	for _, db := range m.app {
		_ = db.Close()
	}
	for _, db := range m.root {
		_ = db.Close()
	}
}

// Writable returns the instances of a DC that answer read_only=0 now.
func (m *MySQL) Writable(ctx context.Context, dc string) []string {
	d, _ := m.lab.DC(dc)
	var out []string
	for _, in := range d.MySQL {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		var ro int
		err := m.app[in.Name].QueryRowContext(qctx, "SELECT @@GLOBAL.read_only").Scan(&ro)
		cancel()
		if err == nil && ro == 0 {
			out = append(out, in.Name)
		}
	}
	return out
}

// SetReadOnly sets an instance's read_only as root.
func (m *MySQL) SetReadOnly(ctx context.Context, instance string, on bool) error {
	root := m.root[instance]
	if root == nil {
		return fmt.Errorf("no root access to %s", instance)
	}
	v := 0
	if on {
		v = 1
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// SET GLOBAL is idempotent: tried again on another connection when the
	// pooled one was killed meanwhile, as the HA agent does when it fences
	// the instance ("invalid connection", which database/sql does not retry).
	for attempt := 1; ; attempt++ {
		_, err := root.ExecContext(qctx, fmt.Sprintf("SET GLOBAL read_only = %d", v))
		if err == nil {
			return nil
		}
		if attempt == setReadOnlyAttempts || qctx.Err() != nil {
			return fmt.Errorf("%s: set read_only=%d: %w", instance, v, err)
		}
	}
}

// setReadOnlyAttempts bounds SetReadOnly's tries.
const setReadOnlyAttempts = 3

// Master returns the one writable instance of a DC.
func (m *MySQL) Master(ctx context.Context, dc string) (string, error) {
	w := m.Writable(ctx, dc)
	if len(w) != 1 {
		return "", fmt.Errorf("%s has %d writable instances (%v)", dc, len(w), w)
	}
	return w[0], nil
}

// Digests reads the table's row count and checksum on every DC's master.
func (m *MySQL) Digests(ctx context.Context) []Digest {
	var out []Digest
	for _, dc := range m.lab.DCs {
		if m.down[dc.Name] {
			continue
		}
		d := Digest{DC: dc.Name}
		master, err := m.Master(ctx, dc.Name)
		if err != nil {
			d.Err = err.Error()
			out = append(out, d)
			continue
		}
		d.Instance = master
		var sum sql.NullString
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = m.app[master].QueryRowContext(qctx, "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('|', id, user_id, amount_cents, IFNULL(note, '')))), 0) AS CHAR) FROM "+m.table+m.excluded("WHERE")).
			Scan(&d.Rows, &sum)
		cancel()
		if err != nil {
			d.Err = err.Error()
		}
		d.Sum = sum.String
		out = append(out, d)
	}
	return out
}

// Present returns, per DC, the drill ids in [lo, hi] its master holds.
func (m *MySQL) Present(ctx context.Context, lo, hi int64) (map[string]map[int64]bool, error) {
	out := map[string]map[int64]bool{}
	for _, dc := range m.lab.DCs {
		if m.down[dc.Name] {
			continue
		}
		master, err := m.Master(ctx, dc.Name)
		if err != nil {
			return nil, err
		}
		ids, err := m.ids(ctx, master, lo, hi)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", master, err)
		}
		out[dc.Name] = ids
	}
	return out, nil
}

func (m *MySQL) ids(ctx context.Context, instance string, lo, hi int64) (map[int64]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rows, err := m.app[instance].QueryContext(qctx, "SELECT id FROM "+m.table+" WHERE id BETWEEN ? AND ?", lo, hi)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	ids := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// Counters reads every shard's counter and drill row count on every DC's
// master; keys are the user ids written, by shard.
func (m *MySQL) Counters(ctx context.Context, keys []string) ([]Counter, error) {
	shardOf := map[string]int{}
	args := make([]any, 0, len(keys))
	for s, k := range keys {
		shardOf[k] = s
		args = append(args, k)
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(keys)), ",")
	var out []Counter
	for _, dc := range m.lab.DCs {
		if m.down[dc.Name] {
			continue
		}
		master, err := m.Master(ctx, dc.Name)
		if err != nil {
			return nil, err
		}
		db := m.app[master]
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		rows, err := db.QueryContext(qctx, "SELECT CAST(user_id AS CHAR), SUM(id >= ?), SUM(IF(id >= ?, amount_cents, 0)), SUM(id < ?"+m.excluded("AND")+") FROM "+
			m.table+" WHERE user_id IN ("+in+") GROUP BY user_id", append([]any{counterBase, counterBase, counterBase}, args...)...)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s: %w", master, err)
		}
		for rows.Next() {
			var key string
			var hasCounter, value, n int64
			if err := rows.Scan(&key, &hasCounter, &value, &n); err != nil {
				_ = rows.Close()
				cancel()
				return nil, err
			}
			out = append(out, Counter{DC: dc.Name, Shard: shardOf[key], Value: value, Rows: n})
		}
		err = rows.Err()
		_ = rows.Close()
		cancel()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// excluded is the condition that leaves out the excluded rows, after word
// (WHERE, AND), or "".
func (m *MySQL) excluded(word string) string {
	if len(m.exclude) == 0 {
		return ""
	}
	ids := make([]string, 0, len(m.exclude))
	for id := range m.exclude {
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	return " " + word + " id NOT IN (" + strings.Join(ids, ",") + ")"
}

// errNotRedundant says what keeps a DC's cluster from full redundancy.
var errNotRedundant = errors.New("not fully redundant")

// Redundant reports whether a DC's cluster has one writable master and
// every other instance read-only and replicating from it, caught up.
func (m *MySQL) Redundant(ctx context.Context, dc string) error {
	if m.down[dc] {
		return nil
	}
	master, err := m.Master(ctx, dc)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotRedundant, err)
	}
	d, _ := m.lab.DC(dc)
	for _, in := range d.MySQL {
		if in.Name == master {
			continue
		}
		root := m.root[in.Name]
		if root == nil {
			return fmt.Errorf("%w: no root access to %s", errNotRedundant, in.Name)
		}
		st, err := slaveStatus(ctx, root)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", errNotRedundant, in.Name, err)
		}
		switch {
		case st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes":
			return fmt.Errorf("%w: %s replication IO=%s SQL=%s %s", errNotRedundant, in.Name, st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_Error"])
		case st["Master_Host"]+":"+st["Master_Port"] != m.addr[master]:
			return fmt.Errorf("%w: %s replicates from %s:%s, not the master %s", errNotRedundant, in.Name, st["Master_Host"], st["Master_Port"], master)
		case st["Seconds_Behind_Master"] != "0":
			return fmt.Errorf("%w: %s is %ss behind", errNotRedundant, in.Name, st["Seconds_Behind_Master"])
		}
	}
	return nil
}

// slaveStatus returns SHOW SLAVE STATUS as column → value.
func slaveStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := db.QueryContext(qctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("not a replica")
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		out[c] = string(vals[i])
	}
	return out, nil
}
