package repl

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/router"
	"github.com/drplane/drplane/pkg/shardmap"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// The keyspaces of TestCityFailover besides orders, each with its own
// city-failover policy: carts is never failed over automatically
// (auto_city_failover off), notes has a data-loss budget (max_rpo) no
// loss window of a killed DC fits in.
const (
	autoOffKeyspace = "carts"
	budgetKeyspace  = "notes"
	budgetMaxRPO    = "1ms"
	policyShards    = 8
)

// policyKeyspaces are the keyspaces above, in the bed's database and
// cluster.
func policyKeyspaces() []topology.Keyspace {
	off := false
	ks := func(name string) topology.Keyspace {
		return topology.Keyspace{Name: name, Cluster: clusterName, Database: database, Table: name, ShardKey: "user_id", Shards: policyShards}
	}
	carts, notes := ks(autoOffKeyspace), ks(budgetKeyspace)
	carts.AutoCityFailover, notes.MaxRPO = &off, budgetMaxRPO
	return []topology.Keyspace{carts, notes}
}

// policyProbe writes to the policy keyspaces' shards through SDK routers
// of the DCs that stay up.
type policyProbe struct {
	b       *bed
	routers map[string]*router.Router
	// keys[keyspace][shard] is a user id routed to the shard.
	keys   map[string]map[int]string
	nextID int64
}

func (b *bed) newPolicyProbe(t testing.TB, api *apiclient.Client, dcs ...string) *policyProbe {
	t.Helper()
	names := []string{autoOffKeyspace, budgetKeyspace}
	p := &policyProbe{b: b, routers: map[string]*router.Router{}, keys: map[string]map[int]string{}, nextID: loadIDBase * 2}
	for _, name := range dcs {
		p.routers[name], _ = b.newRouter(t, b.dcs[name], api, "policy-"+name, names...)
	}
	r := p.routers[dcs[0]]
	for _, ks := range names {
		p.keys[ks] = map[int]string{}
		for uid := int64(1); len(p.keys[ks]) < policyShards; uid++ {
			key := strconv.FormatInt(uid, 10)
			rt, err := r.Route(ks, key)
			require.NoError(t, err, "route %s/%s", ks, key)
			if _, ok := p.keys[ks][rt.Shard]; !ok {
				p.keys[ks][rt.Shard] = key
			}
		}
	}
	return p
}

// write inserts one row into shard of ks through the router of via and
// returns its id, or the router's refusal.
func (p *policyProbe) write(ctx context.Context, via, ks string, shard int) (int64, error) {
	p.nextID++
	id := p.nextID
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := p.routers[via].Write(wctx, ks, p.keys[ks][shard], func(db *sql.DB, _ router.Route) error {
		_, err := db.ExecContext(wctx, "INSERT INTO "+ks+" (id, user_id, amount_cents, note) VALUES (?, ?, 1, 'policy')", id, p.keys[ks][shard])
		return err
	})
	return id, err
}

// requireRefused checks that no router of the DCs that stay up takes a
// write for shard of ks: each answers NotOwner naming owner.
func (p *policyProbe) requireRefused(t *testing.T, ks string, shard int, owner string) {
	t.Helper()
	for via := range p.routers {
		_, err := p.write(t.Context(), via, ks, shard)
		var no *router.NotOwner
		require.ErrorAs(t, err, &no, "a write to held shard %s/%d through %s", ks, shard, via)
		require.Equal(t, owner, no.Owner, "held shard %s/%d", ks, shard)
	}
}

// requireWritableAt checks that shard of ks takes a write through the
// router of its new owner to, and that the row is in to's MySQL.
func (p *policyProbe) requireWritableAt(t *testing.T, ks string, shard int, to string) {
	t.Helper()
	var id int64
	check.For(t, 30*time.Second, pollEvery, func() error {
		var err error
		id, err = p.write(t.Context(), to, ks, shard)
		return err
	})
	var n int
	require.NoError(t, p.b.dcs[to].admin(t).QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+database+"."+ks+" WHERE id = ?", id).Scan(&n))
	require.Equal(t, 1, n, "row %d of %s/%d at %s", id, ks, shard, to)
}

// ownedIn lists the shards of keyspace ks that dc owns.
func (b *bed) ownedIn(t testing.TB, ks, dc string) []int {
	t.Helper()
	m, err := shardmap.Load(context.Background(), b.store, ks)
	require.NoError(t, err)
	var out []int
	for _, s := range m.Shards {
		if s.Owner == dc {
			out = append(out, s.ID)
		}
	}
	return out
}

// auditEvent searches the audit log through the API until an event of
// action about target satisfies pred, and returns it.
func auditEvent(t *testing.T, api *apiclient.Client, action, target string, pred func(*drplanev1.AuditEvent) bool) *drplanev1.AuditEvent {
	t.Helper()
	var found *drplanev1.AuditEvent
	check.For(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		resp, err := api.Audit.SearchAudit(ctx, &drplanev1.SearchAuditRequest{Action: []string{action}, PageSize: 100})
		if err != nil {
			return err
		}
		for _, e := range resp.GetEvents() {
			if e.GetTarget() == target && pred(e) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no matching %s event about %s among %d", action, target, len(resp.GetEvents()))
	})
	return found
}

// getCityFailover reads one city failover with its shards.
func getCityFailover(t testing.TB, api *apiclient.Client, id string) *drplanev1.CityFailover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := api.CityFailover.GetCityFailover(ctx, &drplanev1.GetCityFailoverRequest{Id: id})
	require.NoError(t, err)
	return got.GetFailover()
}
