package repl

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
)

// lateID is the order id of the stale router's late write.
const lateID = int64(7_000_000_001)

// operationView is the part of `drctl operations show -o json` the test
// reads.
type operationView struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader string `json:"leader"`
	Totals struct {
		Shards       int `json:"shards"`
		Moved        int `json:"moved"`
		Waves        int `json:"waves"`
		StaleRouters int `json:"stale_routers"`
		// protojson writes int64 fields as strings.
		BlockP50Ms int64 `json:"block_p50_ms,string"`
		BlockP99Ms int64 `json:"block_p99_ms,string"`
		BlockMaxMs int64 `json:"block_max_ms,string"`
		DurationMs int64 `json:"duration_ms,string"`
	} `json:"totals"`
	Handoffs []struct {
		Shard   int    `json:"shard"`
		State   string `json:"state"`
		From    string `json:"from_dc"`
		BlockMs int64  `json:"block_ms,string"`
	} `json:"handoffs"`
}

// TestEvacuation is the acceptance of planned evacuation and restore on
// real parts: reship and collector processes in three DCs, two coordinator
// processes, SDK writers on every shard throughout, drctl as the operator
// runs it. In order: dc-a1 is evacuated while its leader coordinator is
// killed -9 after the first handoff (the other one finishes it); a router
// of dc-a1 cut off from the coordinators (its connection blackholed) takes
// a late write to a shard dc-a1 gave away, which is refused and listed as
// divergence; an evacuation of dc-a2 is canceled and resumed; both DCs are
// restored with --move-home. Then every acknowledged write is in every DC's
// MySQL, each shard's counter equals its acknowledged writes, every
// request was applied once in every other DC, the tables are equal, and
// every shard has its home DC as its one owner.
func TestEvacuation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 mariadbd and 8 service processes")
	}
	began := time.Now()
	b := startBed(t)
	b.startServices()
	m := b.marks(t)
	ctx := t.Context()

	c1 := b.newCoordinator(b.dcs[dcA1], 1)
	check.For(t, 30*time.Second, 50*time.Millisecond, func() error { return check.That(c1.leads(ctx), "%s leads", c1.id) })
	c2 := b.newCoordinator(b.dcs[dcB1], 1)
	api := dialAPI(t, c2.grpc)
	load := b.startSDKLoad(t, api)
	load.waitAcked(t, 100)
	t.Logf("bed, services, coordinators and SDK load up in %s", time.Since(began).Round(time.Millisecond))

	// A router of dc-a1 whose connection to the coordinators goes silent
	// before the evacuation: it never learns that dc-a1 gave its shards away.
	proxy := harness.Toxiproxy(t, "stale-router", c2.grpc)
	stale, stopStale := b.newRouter(t, b.dcs[dcA1], dialAPI(t, proxy.Listen()), "stale-router-dc-a1")
	proxy.Blackhole()

	ownedA1 := b.ownedBy(t, dcA1)
	var evacID string
	t.Run("EvacuateWhileTheLeaderIsKilled", func(t *testing.T) {
		var killed atomic.Bool
		var atKill evacRecord
		run := b.drctl(t, c2.grpc, func(line string) {
			if killed.Swap(true) {
				return
			}
			// Kill the leader while its next wave is in flight.
			var h handoffLine
			require.NoError(t, json.Unmarshal([]byte(line), &h), line)
			check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
				atKill = b.evacRecord(t, h.Operation)
				return check.That(len(atKill.frozen()) > 0, "no wave in flight: %+v", atKill)
			})
			c1.kill()
		}, "evacuate", dcA1, "--parallel", "4", "--wait", "-o", "json", "--reason", "e2e evacuation")
		require.Equal(t, 0, run.code, "drctl evacuate: %s", run.stderr)
		t.Logf("drctl evacuate: %s", run.stderr)
		require.True(t, killed.Load(), "the leader was killed during the evacuation")
		assert.Equal(t, "RUNNING", atKill.State, "killed while the evacuation ran")
		assert.Less(t, atKill.done(), len(ownedA1), "killed with handoffs still to do")
		t.Logf("leader %s killed with %d of %d shards handed off, shards %v in flight", c1.id, atKill.done(), len(ownedA1), atKill.frozen())
		hs := parseHandoffs(t, run.stdout)
		require.Len(t, hs, len(ownedA1), "one JSON line per handoff:\n%s", run.stdout)
		evacID = hs[0].Operation
		for _, h := range hs {
			assert.Equal(t, "MOVED", h.Outcome, "shard %d", h.Shard)
			assert.Equal(t, dcA1, h.From)
			assert.NotEqual(t, dcA1, h.To)
			assert.NotEmpty(t, h.Watermark)
		}
		op := b.operation(t, c2, evacID)
		assert.Equal(t, "OPERATION_STATE_SUCCEEDED", op.State)
		assert.Equal(t, c2.id, op.Leader, "the next leader finished it")
		// The wave the dead leader left frozen was blocked until the next
		// leader flipped it (its election waits out the dead one's session):
		// its block window says so.
		for _, h := range op.Handoffs {
			if slices.Contains(atKill.frozen(), h.Shard) {
				assert.GreaterOrEqual(t, h.BlockMs, int64(time.Second/time.Millisecond), "shard %d", h.Shard)
			}
		}
		assert.Positive(t, op.Totals.StaleRouters, "the silent router was waited for and counted")
		b.requireFlippedOnce(t, evacID, len(ownedA1))
		assert.Equal(t, topology.DCEvacuated, b.dcState(t, dcA1))
		for _, s := range b.shardMap(t).Shards {
			assert.NotEqual(t, dcA1, s.Owner, "shard %d", s.ID)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("StaleRouterWriteIsDivergence", func(t *testing.T) {
		shard := ownedA1[0]
		err := stale.Write(ctx, keyspace, load.keys[shard], func(db *sql.DB, rt router.Route) error {
			require.Equal(t, dcA1, rt.Owner, "the cut-off router still believes dc-a1 owns shard %d", shard)
			_, err := db.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, 1, 'late')", lateID, load.keys[shard])
			return err
		})
		require.NoError(t, err, "the old owner's master took the late write")
		var entry struct {
			ID        string `json:"id"`
			Keyspace  string `json:"keyspace"`
			Shard     int    `json:"shard"`
			Owner     string `json:"owner_dc"`
			Operation string `json:"fence_operation_id"`
		}
		check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
			run := b.drctl(t, c2.grpc, nil, "divergence", "list", "--origin", dcA1, "-o", "json")
			if run.code != 0 {
				return fmt.Errorf("drctl divergence list: %d: %s", run.code, run.stderr)
			}
			var list struct {
				Entries []json.RawMessage `json:"entries"`
			}
			if err := json.Unmarshal([]byte(run.stdout), &list); err != nil {
				return err
			}
			for _, raw := range list.Entries {
				if err := json.Unmarshal(raw, &entry); err == nil && entry.Shard == shard {
					return nil
				}
			}
			return check.That(false, "no divergence entry for shard %d: %s", shard, run.stdout)
		})
		assert.Equal(t, keyspace, entry.Keyspace)
		assert.Equal(t, evacID, entry.Operation, "fenced by the evacuation")
		assert.NotEqual(t, dcA1, entry.Owner)
		show := b.drctl(t, c2.grpc, nil, "divergence", "show", entry.ID, "-o", "json")
		require.Equal(t, 0, show.code, show.stderr)
		assert.Contains(t, show.stdout, `"int": "`+strconv.FormatInt(lateID, 10)+`"`, "the refused change is the late write")
		// Refused, never shipped: no other DC gets the row.
		check.Hold(t, 2*time.Second, 200*time.Millisecond, func() error {
			for _, dc := range []string{dcA2, dcB1} {
				if n := b.countID(t, dc, lateID); n != 0 {
					return fmt.Errorf("%s applied the late write", dc)
				}
			}
			return nil
		})
		// An operator reapplies it (drctl divergence resolve --action
		// reapply): the shard's owner has no row with its key, so its
		// collector applies it, its reship ships it, and every DC holds it.
		res := b.drctl(t, c2.grpc, nil, "divergence", "resolve", entry.ID, "--action", "reapply", "--reason", "e2e: keep the late order",
			"--wait", "--wait-timeout", "60s", "-o", "json")
		require.Equal(t, 0, res.code, res.stderr)
		var resolved struct {
			Entry struct {
				State      string `json:"state"`
				Resolution struct {
					Target string `json:"target_dc"`
					GTID   string `json:"replay_gtid"`
				} `json:"resolution"`
			} `json:"entry"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &resolved), res.stdout)
		require.Equal(t, "DIVERGENCE_STATE_REPLAYED", resolved.Entry.State, res.stdout)
		assert.Equal(t, entry.Owner, resolved.Entry.Resolution.Target)
		assert.NotEmpty(t, resolved.Entry.Resolution.GTID)
		check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
			for _, dc := range dcNames() {
				if n := b.countID(t, dc, lateID); n != 1 {
					return fmt.Errorf("%s holds %d rows of the reapplied late write", dc, n)
				}
			}
			return nil
		})
		again := b.drctl(t, c2.grpc, nil, "divergence", "resolve", entry.ID, "--action", "discard", "--reason", "twice")
		assert.NotEqual(t, 0, again.code, "resolved already")
		assert.Contains(t, again.stderr, "FAILED_PRECONDITION")
		stopStale()
		proxy.RemoveToxics()
		proxy.Cut()
	})

	t.Run("CancelThenResume", func(t *testing.T) {
		owned := b.ownedBy(t, dcA2)
		start := b.drctl(t, c2.grpc, nil, "evacuate", dcA2, "--parallel", "2", "-o", "json", "--reason", "e2e cancel")
		require.Equal(t, 0, start.code, start.stderr)
		var started struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal([]byte(start.stdout), &started), start.stdout)
		lines := 0
		watch := b.drctl(t, c2.grpc, func(string) {
			if lines++; lines == 2 {
				cancel := b.drctl(t, c2.grpc, nil, "operations", "cancel", started.ID, "--reason", "e2e")
				assert.Equal(t, 0, cancel.code, cancel.stderr)
			}
		}, "operations", "watch", started.ID, "-o", "json")
		require.Equal(t, 5, watch.code, "a canceled operation exits 5: %s", watch.stderr)
		op := b.operation(t, c2, started.ID)
		assert.Equal(t, "OPERATION_STATE_CANCELED", op.State)
		assert.Less(t, op.Totals.Moved, len(owned), "canceled before its last wave")
		assert.Equal(t, topology.DCDraining, b.dcState(t, dcA2), "a canceled evacuation leaves the DC draining")
		sm := b.shardMap(t)
		for _, h := range op.Handoffs {
			s, _ := sm.Shard(h.Shard)
			assert.Equal(t, shardmap.Active, s.State, "shard %d is not left frozen", h.Shard)
			if h.State != "HANDOFF_STATE_MOVED" {
				assert.Equal(t, dcA2, s.Owner, "shard %d not handed off stays at dc-a2", h.Shard)
			}
		}
		resume := b.drctl(t, c2.grpc, nil, "operations", "resume", started.ID, "--wait")
		require.Equal(t, 0, resume.code, "%s%s", resume.stdout, resume.stderr)
		t.Logf("drctl operations resume: %s", resume.stdout)
		assert.Contains(t, resume.stdout, "operation "+started.ID+" SUCCEEDED")
		assert.Equal(t, topology.DCEvacuated, b.dcState(t, dcA2))
		b.requireFlippedOnce(t, started.ID, len(owned))
	})

	t.Run("RestoreMoveHome", func(t *testing.T) {
		for _, dc := range []string{dcA1, dcA2} {
			run := b.drctl(t, c2.grpc, nil, "restore", dc, "--move-home", "--wait", "--reason", "e2e restore")
			require.Equal(t, 0, run.code, "%s%s", run.stdout, run.stderr)
			assert.Equal(t, topology.DCActive, b.dcState(t, dc))
		}
		for _, s := range b.shardMap(t).Shards {
			assert.Equal(t, shardmap.Active, s.State, "shard %d", s.ID)
			assert.Equal(t, s.HomeDC(), s.Owner, "shard %d is home", s.ID)
		}
		// Every router of the load agrees: one owner per shard, its home.
		check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
			for dc, r := range load.routers {
				for shard, key := range load.keys {
					rt, err := r.Route(keyspace, key)
					if err != nil {
						return err
					}
					if s, _ := b.shardMap(t).Shard(shard); rt.Owner != s.Owner {
						return fmt.Errorf("the router of %s routes shard %d to %s, the map to %s", dc, shard, rt.Owner, s.Owner)
					}
				}
			}
			return nil
		})
		load.waitAcked(t, 100)
	})

	load.halt()
	t.Logf("SDK load: %s", load.summary())
	b.requireLoadEverywhere(t, load)
	// The late write, reapplied by an operator at its shard's owner
	// (StaleRouterWriteIsDivergence), is in every DC: the DCs must be equal.
	b.requireConverged(t, m, dcNames()...)
	t.Logf("evacuation acceptance done in %s", time.Since(began).Round(time.Millisecond))
}

// evacRecord is the part of a stored operation record (/operations/<id>)
// the test reads.
type evacRecord struct {
	State    string `json:"state"`
	Handoffs []struct {
		Shard int    `json:"shard"`
		Step  string `json:"step"`
	} `json:"handoffs"`
}

// frozen lists the shards of the wave in flight.
func (r evacRecord) frozen() []int {
	var out []int
	for _, h := range r.Handoffs {
		if h.Step == "FROZEN" {
			out = append(out, h.Shard)
		}
	}
	return out
}

// done counts the handoffs moved or skipped.
func (r evacRecord) done() int {
	n := 0
	for _, h := range r.Handoffs {
		if h.Step == "MOVED" || h.Step == "SKIPPED" {
			n++
		}
	}
	return n
}

// evacRecord reads operation id's record from etcd.
func (b *bed) evacRecord(t testing.TB, id string) evacRecord {
	t.Helper()
	resp, err := b.store.Client().Get(context.Background(), b.store.Key("operations", id))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "operation %s stored", id)
	var r evacRecord
	require.NoError(t, json.Unmarshal(resp.Kvs[0].Value, &r))
	return r
}

// ownedBy lists the shards dc owns, ascending.
func (b *bed) ownedBy(t testing.TB, dc string) []int {
	t.Helper()
	var out []int
	for _, s := range b.shardMap(t).Shards {
		if s.Owner == dc {
			out = append(out, s.ID)
		}
	}
	require.NotEmpty(t, out, "%s owns shards", dc)
	sort.Ints(out)
	return out
}

func (b *bed) shardMap(t testing.TB) shardmap.Map {
	t.Helper()
	sm, err := shardmap.Load(context.Background(), b.store, keyspace)
	require.NoError(t, err)
	return sm
}

func (b *bed) dcState(t testing.TB, dc string) topology.DCState {
	t.Helper()
	topo, _, err := b.store.Topology(context.Background())
	require.NoError(t, err)
	d, ok := topo.DC(dc)
	require.True(t, ok, dc)
	return d.StateOf()
}

// operation reads an operation through drctl.
func (b *bed) operation(t testing.TB, c *coordinator, id string) operationView {
	t.Helper()
	run := b.drctl(t, c.grpc, nil, "operations", "show", id, "-o", "json")
	require.Equal(t, 0, run.code, run.stderr)
	var op operationView
	require.NoError(t, json.Unmarshal([]byte(run.stdout), &op), run.stdout)
	return op
}

// requireFlippedOnce checks the audit log: each shard of operation id was
// flipped exactly once, n shards in all.
func (b *bed) requireFlippedOnce(t testing.TB, id string, n int) {
	t.Helper()
	evs, err := audit.NewOutbox(b.store).List(context.Background(), 0)
	require.NoError(t, err)
	flips := map[string]int{}
	for _, e := range evs {
		if e.Action == "handoff.flip" && e.Params["operation_id"] == id {
			flips[e.Target]++
		}
	}
	assert.Len(t, flips, n, "flipped shards of %s", id)
	for target, k := range flips {
		assert.Equal(t, 1, k, "%s flipped %d times", target, k)
	}
}

// countID counts the rows with order id in dc's copy.
func (b *bed) countID(t testing.TB, dc string, id int64) int {
	t.Helper()
	var n int
	require.NoError(t, b.dcs[dc].app().QueryRowContext(context.Background(), "SELECT COUNT(*) FROM orders WHERE id = ?", id).Scan(&n))
	return n
}

// requireLoadEverywhere waits until every DC's MySQL holds every
// acknowledged write of the load and each shard's counter row equals its
// acknowledged writes (plus at most the writes of unknown outcome).
func (b *bed) requireLoadEverywhere(t testing.TB, l *sdkLoad) {
	t.Helper()
	l.mu.Lock()
	acked := map[int][]int64{}
	maybe := map[int]int{}
	for s, ids := range l.acked {
		acked[s] = append([]int64(nil), ids...)
		maybe[s] = l.maybe[s]
	}
	l.mu.Unlock()
	check.For(t, waitConverge, 200*time.Millisecond, func() error {
		for _, dc := range dcNames() {
			have, counters, err := b.loadRows(dc)
			if err != nil {
				return err
			}
			var missing []int64
			for shard, ids := range acked {
				for _, id := range ids {
					if !have[id] {
						missing = append(missing, id)
					}
				}
				if c := counters[shard]; c < int64(len(ids)) || c > int64(len(ids)+maybe[shard]) {
					return fmt.Errorf("%s: shard %d's counter is %d, acknowledged writes %d (+%d unknown)", dc, shard, c, len(ids), maybe[shard])
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s lacks %d acknowledged writes: %v", dc, len(missing), head(missing))
			}
		}
		return nil
	})
}

// loadRows reads the load's row ids and counter values in dc.
func (b *bed) loadRows(dc string) (map[int64]bool, map[int]int64, error) {
	rows, err := b.dcs[dc].app().QueryContext(context.Background(), "SELECT id, amount_cents FROM orders WHERE id >= ?", loadIDBase)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = rows.Close() }()
	have, counters := map[int64]bool{}, map[int]int64{}
	for rows.Next() {
		var id, amount int64
		if err := rows.Scan(&id, &amount); err != nil {
			return nil, nil, err
		}
		if id >= counterIDBase {
			counters[int(id-counterIDBase)] = amount
		} else {
			have[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dc, err)
	}
	return have, counters, nil
}
