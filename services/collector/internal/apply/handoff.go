package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/divergence"
	"github.com/drplane/drplane/pkg/retry"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/state"
)

// The handoff side of the collector (see the package documentation):
//
//   - barriers: when the coordinator asks this DC for a barrier
//     (state.Barrier at /barriers/<dc>/<id>), the collector writes a row of
//     <database>.drplane_barrier into its master with binlogging on, so the
//     DC's reship ships a barrier event per shard behind everything captured
//     before, and reports the row's GTID — the capture watermark of the
//     handoff;
//   - barrier events from other DCs are applied like any request (a dedup
//     row, no data rows) and move the shard's watermark at once;
//   - divergence: a change whose origin handed the shard off before
//     capturing it (shardmap.Diverged, on the collector's view of the shard
//     map) is not applied; it is recorded (package divergence) and acked; a
//     change its origin shipped and then lost in a lossy failover (an entry
//     of kind discarded) is not applied either, and acked.

// errNoSuchTable is MySQL's ER_NO_SUCH_TABLE.
const errNoSuchTable = 1146

// barrierDDL creates the barrier table in a database.
func barrierDDL(db string) string {
	return "CREATE TABLE IF NOT EXISTS " + qualify(db, state.BarrierTable) + ` (
  id VARCHAR(191) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  keyspace VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  shards TEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB`
}

// maps follows the shard maps of the topology's keyspaces.
type maps struct {
	a       *Applier
	mu      sync.Mutex
	byName  map[string]shardmap.Map
	watched map[string]bool
}

func newMaps(a *Applier) *maps {
	return &maps{a: a, byName: map[string]shardmap.Map{}, watched: map[string]bool{}}
}

// shard returns a shard of a keyspace's current map.
func (m *maps) shard(keyspace string, id int32) (shardmap.Shard, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mp, ok := m.byName[keyspace]
	if !ok {
		return shardmap.Shard{}, false
	}
	return mp.Shard(int(id))
}

// run watches the map of every keyspace the topology names.
func (m *maps) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, ks := range m.a.o.Keyspaces() {
			m.mu.Lock()
			seen := m.watched[ks.Name]
			m.watched[ks.Name] = true
			m.mu.Unlock()
			if !seen {
				wg.Go(func() { m.follow(ctx, ks.Name) })
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *maps) follow(ctx context.Context, keyspace string) {
	for ctx.Err() == nil {
		ch, err := shardmap.Watch(ctx, m.a.o.Store, keyspace)
		if err == nil {
			for mp := range ch {
				m.mu.Lock()
				m.byName[keyspace] = mp
				m.mu.Unlock()
			}
		}
		retry.Sleep(ctx, minBackoff)
	}
}

// diverged sorts out the items whose change diverged: they are recorded
// and marked so that nothing applies them. It returns the rest.
func (a *Applier) diverged(ctx context.Context, items []*item) []*item {
	keep := items[:0]
	for _, it := range items {
		ev := it.ev
		if ev.GetBarrier() != "" {
			keep = append(keep, it)
			continue
		}
		if a.discards.has(ev.GetOriginDc(), ev.GetRequestId()) {
			// Its divergence entry (kind discarded) exists: only refused.
			it.diverged = true
			a.m.diverged.WithLabelValues(ev.GetOriginDc()).Inc()
			a.log.Warn().Str("origin", ev.GetOriginDc()).Str("request", ev.GetRequestId()).
				Msg("refused a change its origin lost in a failover after shipping it (divergence kind discarded)")
			continue
		}
		sh, ok := a.maps.shard(ev.GetKeyspace(), ev.GetShard())
		if !ok {
			keep = append(keep, it)
			continue
		}
		fence, bad := shardmap.Diverged(sh, ev.GetOriginDc(), ev.GetGtid())
		if !bad {
			keep = append(keep, it)
			continue
		}
		it.diverged = true
		data, _ := proto.Marshal(ev)
		e := divergence.Entry{
			Origin: ev.GetOriginDc(), RequestID: ev.GetRequestId(), GTID: ev.GetGtid(), Keyspace: ev.GetKeyspace(),
			Shard: ev.GetShard(), Owner: sh.Owner, FenceWatermark: fence.Watermark, FenceOperation: fence.OperationID,
			DetectedBy: "collector@" + a.o.DC, DetectedAt: a.o.Now().UTC(), CommitTime: it.commitTime(),
			Rows: len(ev.GetRows()), Change: data,
		}
		rctx, cancel := context.WithTimeout(ctx, progressTimeout)
		created, err := divergence.Record(rctx, a.o.Store, e)
		cancel()
		if err != nil {
			// Not recorded: not applied either; the message stays unacked
			// and comes again.
			it.diverged, it.unacked = true, true
			a.log.Warn().Err(err).Str("request", e.ID()).Msg("divergence not recorded yet; the change comes again")
			continue
		}
		a.m.diverged.WithLabelValues(e.Origin).Inc()
		if created {
			a.log.Warn().Str("origin", e.Origin).Str("request", e.RequestID).Str("keyspace", e.Keyspace).
				Int32("shard", e.Shard).Str("owner", e.Owner).Str("fence", e.FenceWatermark).
				Msg("refused a change captured after its origin handed the shard off: divergence recorded")
		}
	}
	return keep
}

// markBarriers writes the barriers this DC is asked for, until ctx ends.
func (a *Applier) markBarriers(ctx context.Context) error {
	st := a.o.Store
	prefix := st.BarrierPrefix(a.o.DC)
	for ctx.Err() == nil {
		resp, err := st.Client().Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			retry.Sleep(ctx, minBackoff)
			continue
		}
		for _, kv := range resp.Kvs {
			a.markBarrier(ctx, kv)
		}
		for wr := range st.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					a.markBarrier(ctx, ev.Kv)
				}
			}
		}
		retry.Sleep(ctx, minBackoff)
	}
	return nil
}

// markBarrier writes one barrier unless it is done; the key is updated
// only if it did not change meanwhile.
func (a *Applier) markBarrier(ctx context.Context, kv *mvccpb.KeyValue) {
	var b state.Barrier
	if json.Unmarshal(kv.Value, &b) != nil || b.GTID != "" || b.Error != "" {
		return
	}
	gtid, err := a.writeBarrier(ctx, b)
	if ctx.Err() != nil {
		return
	}
	b.MarkedAt, b.MarkedBy = a.o.Now().UTC(), a.o.ID
	if err != nil {
		b.Error = err.Error()
		a.log.Warn().Err(err).Str("barrier", b.ID).Msg("handoff barrier not written")
	} else {
		b.GTID = gtid
	}
	data, _ := json.Marshal(b)
	wctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	key := string(kv.Key)
	_, err = a.o.Store.Client().Txn(wctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		a.log.Warn().Err(err).Str("barrier", b.ID).Msg("handoff barrier: report failed")
	}
}

// writeBarrier commits the barrier row on the master (binlogged, so the
// DC's reship ships it) and returns the transaction's GTID.
func (a *Applier) writeBarrier(ctx context.Context, b state.Barrier) (string, error) {
	if !validIdent(b.Database) {
		return "", fmt.Errorf("%w: database name %q", ErrInvalidEvent, b.Database)
	}
	pool, _, err := a.o.Master.DB()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The table is created once per database and run: the DDL is a round
	// trip, a metadata lock and a binlogged statement of its own inside
	// the shard's block window. A table gone since (dropped by hand) is
	// created again and the row written once more.
	create := func() error {
		if _, err := pool.ExecContext(ctx, barrierDDL(b.Database)); err != nil {
			return fmt.Errorf("create %s: %w", qualify(b.Database, state.BarrierTable), err)
		}
		a.barrierTables[b.Database] = true
		return nil
	}
	if !a.barrierTables[b.Database] {
		if err := create(); err != nil {
			return "", err
		}
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	shards := make([]string, len(b.Shards))
	for i, s := range slices.Sorted(slices.Values(b.Shards)) {
		shards[i] = strconv.Itoa(int(s))
	}
	insert := func() error {
		_, err := conn.ExecContext(ctx, "INSERT INTO "+qualify(b.Database, state.BarrierTable)+
			" (id, keyspace, shards) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE shards = VALUES(shards), created_at = CURRENT_TIMESTAMP(6)",
			b.ID, b.Keyspace, strings.Join(shards, ","))
		return err
	}
	err = insert()
	if me := (*mysql.MySQLError)(nil); errors.As(err, &me) && me.Number == errNoSuchTable {
		delete(a.barrierTables, b.Database)
		if err = create(); err != nil {
			return "", err
		}
		err = insert()
	}
	if err != nil {
		return "", fmt.Errorf("write barrier %s: %w", b.ID, err)
	}
	var gtid sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid); err != nil {
		return "", fmt.Errorf("read the barrier's gtid: %w", err)
	}
	if !gtid.Valid || gtid.String == "" {
		return "", errors.New("the barrier's transaction has no gtid (binary log off?)")
	}
	return gtid.String, nil
}
