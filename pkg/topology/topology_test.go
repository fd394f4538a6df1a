package topology

import (
	"errors"
	"strings"
	"testing"
)

func sample() Topology {
	return Topology{
		Cities: []City{{Name: "city-a"}, {Name: "city-b"}},
		DCs:    []DC{{Name: "dc-a1", City: "city-a"}, {Name: "dc-b1", City: "city-b"}},
		Clusters: []Cluster{
			{Name: "main", DC: "dc-a1", Instances: []Instance{{Name: "a1-db1", Addr: "127.0.0.1:3306"}}},
			{Name: "main", DC: "dc-b1", Instances: []Instance{{Name: "b1-db1", Addr: "127.0.0.1:3307"}}},
		},
		Keyspaces: []Keyspace{{Name: "orders", Cluster: "main", Database: "shop", Table: "orders", ShardKey: "user_id", Shards: 64}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Topology)
		field  string // empty: valid
	}{
		{"valid", func(*Topology) {}, ""},
		{"unknown DC in cluster", func(t *Topology) { t.Clusters[1].DC = "dc-x" }, "clusters[1].dc"},
		{"unknown city", func(t *Topology) { t.DCs[0].City = "nowhere" }, "dcs[0].city"},
		{"duplicate port", func(t *Topology) { t.Clusters[1].Instances[0].Addr = "127.0.0.1:3306" }, "clusters[1].instances[0].addr"},
		{"bad addr", func(t *Topology) { t.Clusters[0].Instances[0].Addr = "localhost" }, "clusters[0].instances[0].addr"},
		{"port range", func(t *Topology) { t.Clusters[0].Instances[0].Addr = "h:70000" }, "clusters[0].instances[0].addr"},
		{"duplicate instance", func(t *Topology) { t.Clusters[1].Instances[0].Name = "a1-db1" }, "clusters[1].instances[0].name"},
		{"bad state", func(t *Topology) { t.DCs[1].State = "ON_FIRE" }, "dcs[1].state"},
		{"no dcs", func(t *Topology) { t.DCs = nil; t.Clusters = nil; t.Keyspaces = nil }, "dcs"},
		{"keyspace cluster missing in a DC", func(t *Topology) { t.Clusters = t.Clusters[:1] }, "keyspaces[0].cluster"},
		{"zero shards", func(t *Topology) { t.Keyspaces[0].Shards = 0 }, "keyspaces[0].shards"},
		{"bad name", func(t *Topology) { t.Cities[0].Name = "city a" }, "cities[0].name"},
		{"more tables", func(t *Topology) { t.Keyspaces[0].Tables = []string{"items", "payments"} }, ""},
		{"drplane's own table", func(t *Topology) { t.Keyspaces[0].Table = "DRPLANE_applied" }, "keyspaces[0].table"},
		{"own table among tables", func(t *Topology) { t.Keyspaces[0].Tables = []string{"items", "drplane_barrier"} }, "keyspaces[0].tables[1]"},
		{"table listed twice", func(t *Topology) { t.Keyspaces[0].Tables = []string{"items", "orders"} }, "keyspaces[0].tables[1]"},
		{"empty table in tables", func(t *Topology) { t.Keyspaces[0].Tables = []string{""} }, "keyspaces[0].tables[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := sample()
			tt.mutate(&topo)
			err := topo.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError, got %T", err)
			}
			found := false
			for _, fe := range ve.Errs {
				if fe.Field == tt.field {
					found = true
				}
			}
			if !found || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name field %s", err, tt.field)
			}
		})
	}
}

func TestKeyspaceTables(t *testing.T) {
	ks := Keyspace{Table: "orders", Tables: []string{"items"}}
	if got := ks.AllTables(); len(got) != 2 || got[0] != "orders" || got[1] != "items" {
		t.Fatalf("AllTables = %v", got)
	}
	for table, want := range map[string]bool{"orders": true, "items": true, "users": false, "Orders": false, "": false} {
		if ks.HasTable(table) != want {
			t.Errorf("HasTable(%q) = %v, want %v", table, !want, want)
		}
	}
}

func TestKeyspaceEqual(t *testing.T) {
	on, on2, off := true, true, false
	a := Keyspace{Name: "orders", Table: "orders", Tables: []string{"items"}, AutoCityFailover: &on}
	if b := a; !a.Equal(b) {
		t.Fatal("a copy differs")
	}
	b := a
	b.AutoCityFailover = &on2
	if !a.Equal(b) {
		t.Fatal("equal policies behind different pointers differ")
	}
	for name, mutate := range map[string]func(*Keyspace){
		"tables": func(k *Keyspace) { k.Tables = []string{"items", "payments"} },
		"auto":   func(k *Keyspace) { k.AutoCityFailover = &off },
		"unset":  func(k *Keyspace) { k.AutoCityFailover = nil },
		"rpo":    func(k *Keyspace) { k.MaxRPO = "1s" },
		"shards": func(k *Keyspace) { k.Shards = 8 },
	} {
		c := a
		mutate(&c)
		if a.Equal(c) {
			t.Errorf("%s: a change not seen", name)
		}
	}
}

func TestLookups(t *testing.T) {
	topo := sample()
	if _, ok := topo.DC("dc-b1"); !ok {
		t.Fatal("dc-b1 not found")
	}
	if got := topo.ClustersIn("dc-a1"); len(got) != 1 || got[0].Instances[0].Name != "a1-db1" {
		t.Fatalf("ClustersIn = %+v", got)
	}
	if _, ok := topo.Cluster("dc-b1", "main"); !ok {
		t.Fatal("cluster not found")
	}
	if ks, ok := topo.Keyspace("orders"); !ok || ks.Shards != 64 {
		t.Fatalf("keyspace = %+v", ks)
	}
	if (DC{}).StateOf() != DCActive {
		t.Fatal("empty state must read as ACTIVE")
	}
}
