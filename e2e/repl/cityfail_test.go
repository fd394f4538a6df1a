package repl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/shardmap"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// agentTTL is the election (and DC lease) TTL of the bed's HA agents.
const agentTTL = 2 * time.Second

// newAgent starts d's HA agent: it supervises d's cluster and keeps d's
// DC lease.
func (b *bed) newAgent(d *dc) *service {
	s := b.newService(d, "haagent")
	delete(s.cfg, "nats_url")
	s.cfg["mysql"] = map[string]any{"user": d.users.AdminUser, "password": d.users.AdminPassword,
		"repl_user": d.users.ReplUser, "repl_password": d.users.ReplPassword}
	s.cfg["poll_interval"] = "200ms"
	s.cfg["election"] = map[string]any{"ttl": agentTTL.String(), "fence_before": "1s"}
	s.start()
	return s
}

// dcVerdict reads the leader's liveness verdict about dc.
func (b *bed) dcVerdict(t testing.TB, dc string) string {
	t.Helper()
	resp, err := b.store.Client().Get(context.Background(), b.store.Key("dcstatus", dc))
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return ""
	}
	var s struct {
		Code string `json:"code"`
	}
	require.NoError(t, json.Unmarshal(resp.Kvs[0].Value, &s))
	return s.Code
}

// cityFailovers lists the city failovers of dc through the API.
func cityFailovers(t testing.TB, api drplanev1.CityFailoverServiceClient, dc string) []*drplanev1.CityFailover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := api.ListCityFailovers(ctx, &drplanev1.ListCityFailoversRequest{Dc: dc})
	require.NoError(t, err)
	return resp.GetFailovers()
}

// TestCityFailover is the acceptance of automatic city failover on real
// parts: MariaDB, reship, collector, an HA agent and a coordinator (with
// its ledger) in each of three DCs, SDK writers on every shard. First
// dc-a1's agent is killed: its DC lease expires while the other DCs still
// reach its master, and nothing is failed over. Then every process of
// dc-a1 is killed -9 (its two mariadbd, reship, collector, coordinator)
// and its NATS server stopped: the leader declares it LOST and flips its
// orders shards; the SDK writers find every one of them writable in its
// backup DC. The failover's estimate is checked against MySQL read
// directly at the new owners: every acknowledged write missing there is
// one the ledger listed for its shard or was acknowledged inside the
// shard's reported loss window.
//
// Two more keyspaces carry their own policy: carts has
// auto_city_failover off and notes a max_rpo no loss window fits in. The
// automatic failover holds both (HELD, the reason per shard, audited, and
// the SDK still refuses their writes outside dc-a1); an operator's `drctl
// failover dc` then flips carts (an operator overrides auto_city_failover)
// but not notes (the budget still holds), and `--accept-loss` flips notes
// too: each step audited with its actor, every shard writable at its new
// owner.
func TestCityFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 mariadbd and 12 service processes")
	}
	began := time.Now()
	b := startBedWith(t, shardCount, policyKeyspaces()...)
	b.startServices()
	agents := map[string]*service{}
	for _, name := range dcNames() {
		agents[name] = b.newAgent(b.dcs[name])
	}
	ctx := t.Context()
	coords := map[string]*coordinator{}
	// dc-b1's coordinator starts first and leads: dc-a1's loss does not
	// wait for a leader election.
	for _, name := range []string{dcB1, dcA2, dcA1} {
		coords[name] = b.newCoordinatorWith(b.dcs[name], 1, map[string]any{"nats_url": b.mesh.URL(name)})
		if name == dcB1 {
			check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
				return check.That(coords[dcB1].leads(ctx), "%s leads", coords[dcB1].id)
			})
		}
	}
	check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, name := range dcNames() {
			if v := b.dcVerdict(t, name); v != "DCAlive" {
				return check.That(false, "%s is %q", name, v)
			}
		}
		return nil
	})
	api := dialAPI(t, coords[dcB1].grpc)
	load := b.startSDKLoad(t, api)
	load.waitAcked(t, 100)
	ownedA1 := b.ownedBy(t, dcA1)
	heldA1 := map[string][]int{}
	for _, ks := range []string{autoOffKeyspace, budgetKeyspace} {
		heldA1[ks] = b.ownedIn(t, ks, dcA1)
		require.NotEmpty(t, heldA1[ks], "dc-a1 owns shards of %s", ks)
	}
	probe := b.newPolicyProbe(t, api, dcA2, dcB1)
	t.Logf("bed, agents, coordinators and SDK load up in %s; dc-a1 owns %d shards", time.Since(began).Round(time.Millisecond), len(ownedA1))

	t.Run("LeaseGoneButSeenIsNotFailedOver", func(t *testing.T) {
		agents[dcA1].kill()
		check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
			v := b.dcVerdict(t, dcA1)
			return check.That(v == "DCLeaseLostSeenByPeers", "dc-a1 is %q", v)
		})
		check.Hold(t, 3*time.Second, 200*time.Millisecond, func() error {
			if fs := cityFailovers(t, api.CityFailover, dcA1); len(fs) > 0 {
				return fmt.Errorf("dc-a1 failed over while the others see it: %v", fs[0])
			}
			return check.That(len(b.ownedBy(t, dcA1)) == len(ownedA1), "dc-a1 lost shards")
		})
	})
	if t.Failed() {
		t.FailNow()
	}

	var killedAt time.Time
	var killID int64
	t.Run("LostDCIsFailedOver", func(t *testing.T) {
		d := b.dcs[dcA1]
		killedAt, killID = time.Now(), load.nextID.Load()
		var wg sync.WaitGroup
		for _, in := range d.instances() {
			wg.Go(func() { _ = in.Kill() })
		}
		for _, s := range []*service{d.reship, d.collector, coords[dcA1].service} {
			wg.Go(s.kill)
		}
		wg.Go(func() { _ = b.mesh.Stop(dcA1) })
		wg.Wait()
		var f *drplanev1.CityFailover
		check.For(t, 60*time.Second, 100*time.Millisecond, func() error {
			fs := cityFailovers(t, api.CityFailover, dcA1)
			if len(fs) == 0 {
				return check.That(false, "no city failover of dc-a1 yet (verdict %s)", b.dcVerdict(t, dcA1))
			}
			f = fs[0]
			// HELD: the orders shards flipped, the policy keyspaces' not.
			return check.That(f.GetState() == drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD, "state %s", f.GetState())
		})
		declared := f.GetCreatedAt().AsTime()
		flipped := f.GetFlippedAt().AsTime()
		assert.Equal(t, "automatic", f.GetTrigger())
		assert.Equal(t, "DCLost", f.GetVerdict())
		assert.ElementsMatch(t, []string{dcA2, dcB1}, f.GetWitnesses())
		assert.EqualValues(t, len(ownedA1), f.GetShardsFlipped())
		for _, s := range b.shardMap(t).Shards {
			assert.NotEqual(t, dcA1, s.Owner, "shard %d", s.ID)
		}
		for ks, shards := range heldA1 {
			assert.Equal(t, shards, b.ownedIn(t, ks, dcA1), "the shards of %s stay at dc-a1", ks)
		}
		// Every shard of dc-a1 takes SDK writes in its backup DC.
		check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
			load.mu.Lock()
			defer load.mu.Unlock()
			for _, shard := range ownedA1 {
				ids := load.acked[shard]
				if len(ids) == 0 || ids[len(ids)-1] <= killID {
					return check.That(false, "shard %d has no write acknowledged since the kill", shard)
				}
			}
			return nil
		})
		writable := time.Now()
		t.Logf("dc-a1 killed at %s: declared LOST %s later, %d shards flipped in %dms (%s after the kill), all writable in their backups %s after the kill; estimate %d requests, loss window %dms; load %s",
			killedAt.Format("15:04:05.000"), declared.Sub(killedAt).Round(time.Millisecond), f.GetShardsFlipped(), f.GetFlipMs(),
			flipped.Sub(killedAt).Round(time.Millisecond), writable.Sub(killedAt).Round(time.Millisecond),
			f.GetEstimate().GetRequestsTotal(), f.GetEstimate().GetMaxLagBoundMs(), load.summary())
	})
	if t.Failed() {
		t.FailNow()
	}

	var failoverID string
	t.Run("PolicyHoldsKeyspaces", func(t *testing.T) {
		fs := cityFailovers(t, api.CityFailover, dcA1)
		require.Len(t, fs, 1)
		failoverID = fs[0].GetId()
		f := getCityFailover(t, api, failoverID)
		require.Equal(t, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD, f.GetState())
		held := map[string][]int{}
		for _, s := range f.GetShards() {
			switch s.GetKeyspace() {
			case keyspace:
				assert.True(t, s.GetFlipped(), "orders/%d flipped", s.GetShard())
				assert.Empty(t, s.GetHeld(), "orders/%d", s.GetShard())
			case autoOffKeyspace:
				assert.False(t, s.GetFlipped(), "carts/%d held", s.GetShard())
				assert.Equal(t, "auto_city_failover is off for keyspace carts", s.GetHeld())
				held[s.GetKeyspace()] = append(held[s.GetKeyspace()], int(s.GetShard()))
			case budgetKeyspace:
				// The loss window runs from the last write heard from dc-a1
				// to its lease's expiry, 2 s after the kill at most: always
				// over 1 ms.
				assert.True(t, s.GetLagBoundMs() < 0 || s.GetLagBoundMs() > 1, "notes/%d loss window %d ms", s.GetShard(), s.GetLagBoundMs())
				assert.False(t, s.GetFlipped(), "notes/%d held", s.GetShard())
				assert.Contains(t, s.GetHeld(), "max_rpo 1ms", "notes/%d", s.GetShard())
				held[s.GetKeyspace()] = append(held[s.GetKeyspace()], int(s.GetShard()))
			default:
				t.Errorf("shard %s/%d on the record", s.GetKeyspace(), s.GetShard())
			}
		}
		for ks, shards := range heldA1 {
			assert.ElementsMatch(t, shards, held[ks], "held shards of %s", ks)
			for _, shard := range shards {
				probe.requireRefused(t, ks, shard, dcA1)
			}
		}
		ev := auditEvent(t, api, "city_failover.held", dcA1, func(e *drplanev1.AuditEvent) bool {
			return e.GetParams()["failover_id"] == failoverID
		})
		assert.Equal(t, "coordinator:"+coords[dcB1].id, ev.GetActor())
		assert.Equal(t, "automatic", ev.GetParams()["trigger"])
		assert.Equal(t, strconv.Itoa(len(ownedA1)), ev.GetParams()["flipped"])
		assert.NotEmpty(t, ev.GetError(), "the hold's reason")
		t.Logf("held by policy: %v; audited %s: %s", held, ev.GetAction(), ev.GetError())
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("EstimateAgainstMySQL", func(t *testing.T) {
		load.halt()
		fs := cityFailovers(t, api.CityFailover, dcA1)
		require.Len(t, fs, 1)
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := api.CityFailover.GetCityFailover(gctx, &drplanev1.GetCityFailoverRequest{Id: fs[0].GetId()})
		require.NoError(t, err)
		f := got.GetFailover()
		end := f.GetLeaseGoneSince().AsTime()
		// The loss window ends at the DC's last sight alive, which the
		// record does not carry over the API: the kill bounds it.
		if killedAt.After(end) {
			end = killedAt
		}
		byShard := map[int]*drplanev1.CityFailoverShard{}
		for _, s := range f.GetShards() {
			if s.GetKeyspace() == keyspace {
				byShard[int(s.GetShard())] = s
			}
		}
		listed := map[string]bool{}
		for _, id := range f.GetEstimate().GetRequestIds() {
			listed[id] = true
			gtid, shard, ok := strings.Cut(id, "/")
			require.True(t, ok, "request id %q is <gtid>/<shard>", id)
			assert.True(t, strings.HasPrefix(gtid, "1-"), "request %s was captured in dc-a1 (GTID domain 1)", id)
			n, err := strconv.Atoi(shard)
			require.NoError(t, err)
			assert.Contains(t, ownedA1, n, "request %s is of a shard dc-a1 owned", id)
		}
		load.mu.Lock()
		defer load.mu.Unlock()
		ackedBefore, missing, inWindow := 0, 0, 0
		var unexplained []string
		for _, shard := range ownedA1 {
			s := byShard[shard]
			require.NotNil(t, s, "shard %d on the record", shard)
			present := map[int64]bool{}
			rows, err := b.dcs[s.GetToDc()].admin(t).QueryContext(ctx, "SELECT id FROM "+database+".orders WHERE user_id = ?", load.keys[shard])
			require.NoError(t, err)
			for rows.Next() {
				var id int64
				require.NoError(t, rows.Scan(&id))
				present[id] = true
			}
			require.NoError(t, rows.Err())
			_ = rows.Close()
			window := time.Duration(s.GetLagBoundMs()) * time.Millisecond
			lost := 0
			for _, id := range load.acked[shard] {
				if id > killID {
					continue
				}
				ackedBefore++
				if present[id] {
					continue
				}
				missing++
				switch at := load.ackedAt[id]; {
				case s.GetLagBoundMs() >= 0 && !at.Before(end.Add(-window)):
					inWindow++
				default:
					lost++
					if lost > int(s.GetLedgerMissing()) {
						unexplained = append(unexplained, fmt.Sprintf("shard %d id %d acked %s before the window's end (window %s, ledger %d)",
							shard, id, end.Sub(at).Round(time.Millisecond), window, s.GetLedgerMissing()))
					}
				}
			}
		}
		sort.Strings(unexplained)
		t.Logf("estimate against MySQL: %d writes acknowledged on dc-a1's shards before the kill, %d missing at the new owners (%d inside the loss window, %d outside it); the ledger listed %d requests %v",
			ackedBefore, missing, inWindow, missing-inWindow, len(listed), f.GetEstimate().GetRequestIds())
		assert.Empty(t, unexplained, "acknowledged writes lost beyond the estimate")
		assert.Positive(t, ackedBefore)
	})

	t.Run("OperatorFlipsTheHeld", func(t *testing.T) {
		owners := func(ks string) map[int]string {
			m, err := shardmap.Load(ctx, b.store, ks)
			require.NoError(t, err)
			out := map[int]string{}
			for _, s := range m.Shards {
				out[s.ID] = s.Owner
			}
			return out
		}
		// Without --accept-loss an operator overrides auto_city_failover,
		// not the budget.
		run := b.drctl(t, coords[dcB1].grpc, nil, "failover", "dc", dcA1, "--reason", "carts by hand")
		require.Equal(t, 0, run.code, run.stderr)
		f := getCityFailover(t, api, failoverID)
		assert.Equal(t, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD, f.GetState())
		assert.Equal(t, "operator:evac-admin", f.GetTrigger())
		assert.Empty(t, b.ownedIn(t, autoOffKeyspace, dcA1), "carts flipped by the operator")
		assert.Equal(t, heldA1[budgetKeyspace], b.ownedIn(t, budgetKeyspace, dcA1), "notes still held by max_rpo")
		cartsTo := owners(autoOffKeyspace)
		for _, shard := range heldA1[autoOffKeyspace] {
			probe.requireWritableAt(t, autoOffKeyspace, shard, cartsTo[shard])
		}
		for _, shard := range heldA1[budgetKeyspace] {
			probe.requireRefused(t, budgetKeyspace, shard, dcA1)
		}
		auditEvent(t, api, "city_failover.request", dcA1, func(e *drplanev1.AuditEvent) bool {
			return e.GetActor() == "token:evac-admin" && e.GetParams()["accept_loss"] == "false" && e.GetParams()["failover_id"] == failoverID
		})
		auditEvent(t, api, "city_failover.held", dcA1, func(e *drplanev1.AuditEvent) bool {
			return e.GetActor() == "token:evac-admin" && e.GetParams()["failover_id"] == failoverID
		})

		run = b.drctl(t, coords[dcB1].grpc, nil, "failover", "dc", dcA1, "--accept-loss", "--reason", "budget waived")
		require.Equal(t, 0, run.code, run.stderr)
		f = getCityFailover(t, api, failoverID)
		assert.Equal(t, drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE, f.GetState())
		assert.True(t, f.GetAcceptLoss())
		for _, ks := range []string{keyspace, autoOffKeyspace, budgetKeyspace} {
			assert.Empty(t, b.ownedIn(t, ks, dcA1), "%s: dc-a1 owns nothing", ks)
		}
		notesTo := owners(budgetKeyspace)
		for _, shard := range heldA1[budgetKeyspace] {
			probe.requireWritableAt(t, budgetKeyspace, shard, notesTo[shard])
		}
		ev := auditEvent(t, api, "city_failover.flip", dcA1, func(e *drplanev1.AuditEvent) bool {
			return e.GetActor() == "token:evac-admin" && e.GetParams()["failover_id"] == failoverID && e.GetParams()["accept_loss"] == "true"
		})
		assert.Equal(t, "DONE", ev.GetParams()["state"])
		auditEvent(t, api, "city_failover.request", dcA1, func(e *drplanev1.AuditEvent) bool {
			return e.GetActor() == "token:evac-admin" && e.GetParams()["accept_loss"] == "true"
		})
		t.Logf("operator: carts flipped to %v without --accept-loss, notes to %v with it", cartsTo, notesTo)
	})
}
