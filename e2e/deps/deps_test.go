package deps_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// graph maps a workspace package to its direct imports, both as import
// paths; test variants are folded into the package they test.
type graph map[string][]string

// listGraph runs `go list -deps -json` over every workspace package (with
// their tests when withTests) and returns the import graph of everything
// listed, dependencies included.
func listGraph(t *testing.T, withTests bool) graph {
	t.Helper()
	root := workspaceRoot(t)
	args := []string{"list", "-deps", "-json=ImportPath,Imports"}
	if withTests {
		args = append(args, "-test")
	}
	args = append(args, modulePrefix+"...")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(t), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	g, err := decodeGraph(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// decodeGraph reads the stream of JSON objects go list prints.
func decodeGraph(r io.Reader) (graph, error) {
	g := graph{}
	dec := json.NewDecoder(r)
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return g, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		from := normalize(p.ImportPath)
		for _, imp := range p.Imports {
			imp = normalize(imp)
			if imp != from && !slices.Contains(g[from], imp) {
				g[from] = append(g[from], imp)
			}
		}
		if _, ok := g[from]; !ok {
			g[from] = nil
		}
	}
}

// normalize folds test variants into their package: "p [p.test]", "p.test"
// and "p_test" all become "p".
func normalize(path string) string {
	path, _, _ = strings.Cut(path, " ")
	path = strings.TrimSuffix(path, ".test")
	return strings.TrimSuffix(path, "_test")
}

// under reports whether path is dir (relative to the module prefix) or below it.
func under(path, dir string) bool {
	p := modulePrefix + dir
	return path == p || strings.HasPrefix(path, p+"/")
}

// service returns the service a package belongs to, or "".
func service(path string) string {
	rest, ok := strings.CutPrefix(path, modulePrefix+"services/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// rule forbids packages matching from to depend, directly or not, on
// packages matching to.
type rule struct {
	name string
	from func(pkg string) bool
	to   func(pkg, dep string) bool
	// binaryOnly rules are checked on the binaries' graph only: with tests,
	// the testing package itself and the tests of the packages depended on
	// (folded into them) reach what the rule bans.
	binaryOnly bool
}

func rules() []rule {
	inAny := func(dep string, dirs ...string) bool {
		for _, d := range dirs {
			if under(dep, d) {
				return true
			}
		}
		return false
	}
	return []rule{
		{
			name: "proto depends on no other workspace module",
			from: func(p string) bool { return under(p, "proto") },
			to:   func(_, d string) bool { return inAny(d, "pkg", "services", "cmd", "e2e") },
		},
		{
			name: "pkg depends on no service, command or e2e",
			from: func(p string) bool { return under(p, "pkg") },
			to:   func(_, d string) bool { return inAny(d, "services", "cmd", "e2e") },
		},
		{
			name: "cmd depends on no service or e2e",
			from: func(p string) bool { return under(p, "cmd") },
			to:   func(_, d string) bool { return inAny(d, "services", "e2e") },
		},
		{
			name: "a service depends on no other service, command or e2e",
			from: func(p string) bool { return service(p) != "" },
			to: func(p, d string) bool {
				other := service(d)
				return (other != "" && other != service(p)) || inAny(d, "cmd", "e2e")
			},
		},
		{
			name: "haagent never depends on the Elasticsearch client",
			from: func(p string) bool { return service(p) == "haagent" },
			to: func(_, d string) bool {
				return d == "github.com/elastic/go-elasticsearch" || strings.HasPrefix(d, "github.com/elastic/go-elasticsearch/")
			},
		},
		{
			// analysis is pure functions over one snapshot. It still reaches
			// the etcd client through pkg/state, whose record types
			// (InstanceStatus, Role) live beside the store; that ban waits
			// for the records to move out of the store package.
			name:       "haagent's analysis talks to no server and runs no process",
			binaryOnly: true,
			from:       func(p string) bool { return under(p, "services/haagent/internal/analysis") },
			to: func(_, d string) bool {
				return d == "database/sql" || d == "os/exec" || d == "github.com/go-sql-driver/mysql" ||
					inAny(d, "pkg/mysqld", "pkg/masterdb")
			},
		},
		{
			// The dashboard's browser tests share pkg/browsertest; a
			// browser driver in a binary would be dead weight at best.
			name:       "only pkg/browsertest and tests use the browser driver (chromedp)",
			binaryOnly: true,
			from:       func(p string) bool { return !under(p, "pkg/browsertest") },
			to: func(_, d string) bool {
				return under(d, "pkg/browsertest") || strings.HasPrefix(d, "github.com/chromedp/")
			},
		},
	}
}

// violations returns, per broken rule, one import chain for every forbidden
// dependency of every workspace package.
func violations(g graph, rs []rule) []string {
	var out []string
	pkgs := make([]string, 0, len(g))
	for p := range g {
		if strings.HasPrefix(p, modulePrefix) {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	for _, r := range rs {
		for _, p := range pkgs {
			if !r.from(p) {
				continue
			}
			for _, chain := range forbiddenChains(g, p, func(d string) bool { return r.to(p, d) }) {
				out = append(out, r.name+": "+strings.Join(chain, " → "))
			}
		}
	}
	return out
}

// forbiddenChains walks everything start depends on (breadth first) and
// returns the shortest import chain to each dependency bad matches.
func forbiddenChains(g graph, start string, bad func(string) bool) [][]string {
	prev := map[string]string{start: ""}
	queue := []string{start}
	var hits []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		imps := slices.Clone(g[p])
		sort.Strings(imps)
		for _, d := range imps {
			if _, seen := prev[d]; seen {
				continue
			}
			prev[d] = p
			if bad(d) {
				hits = append(hits, d)
				continue // one chain to the forbidden package is enough
			}
			queue = append(queue, d)
		}
	}
	chains := make([][]string, 0, len(hits))
	for _, h := range hits {
		var chain []string
		for p := h; p != ""; p = prev[p] {
			chain = append([]string{strings.TrimPrefix(p, modulePrefix)}, chain...)
		}
		chains = append(chains, chain)
	}
	return chains
}

func requireListed(t *testing.T, g graph, pkgs ...string) {
	t.Helper()
	for _, p := range pkgs {
		if _, ok := g[modulePrefix+p]; !ok {
			t.Fatalf("go list did not list %s: the workspace pattern matched less than expected", p)
		}
	}
}

func TestDependencyDirection(t *testing.T) {
	for _, withTests := range []bool{false, true} {
		name := "binaries"
		if withTests {
			name = "with tests"
		}
		t.Run(name, func(t *testing.T) {
			g := listGraph(t, withTests)
			requireListed(t, g, "proto/drplane/v1", "pkg/state", "services/haagent/cmd/haagent",
				"services/coordinator/cmd/coordinator", "cmd/drctl")
			rs := rules()
			if withTests {
				rs = slices.DeleteFunc(rs, func(r rule) bool { return r.binaryOnly })
			}
			if v := violations(g, rs); len(v) > 0 {
				t.Errorf("%d forbidden dependencies:\n  %s", len(v), strings.Join(v, "\n  "))
			}
		})
	}
}

// TestRulesCatchViolations feeds a crafted graph with one violation per rule
// to the checker, so a rule that stopped matching shows up here.
func TestRulesCatchViolations(t *testing.T) {
	p := func(s string) string { return modulePrefix + s }
	g := graph{
		p("proto/drplane/v1"):                    {p("pkg/topology")},
		p("pkg/topology"):                        nil,
		p("pkg/state"):                           {p("pkg/topology"), p("services/haagent/internal/observe")},
		p("cmd/drctl"):                           {p("pkg/apiclient")},
		p("pkg/apiclient"):                       {p("services/coordinator/internal/auth")},
		p("services/coordinator/internal/auth"):  {"google.golang.org/grpc"},
		p("services/reship/internal/capture"):    {p("services/collector/internal/apply")},
		p("services/collector/internal/apply"):   nil,
		p("services/haagent/internal/observe"):   {p("services/haagent/internal/audit")},
		p("services/haagent/internal/audit"):     {"github.com/elastic/go-elasticsearch/v8"},
		p("services/haagent/cmd/haagent"):        {p("services/haagent/internal/observe"), p("e2e/lab")},
		p("e2e/lab"):                             nil,
		p("services/haagent/internal/analysis"):  {p("pkg/mysqld")},
		p("pkg/mysqld"):                          {"os/exec"},
		p("services/coordinator/internal/ui"):    {"github.com/chromedp/cdproto/runtime"},
		p("e2e/example/router"):                  {p("pkg/browsertest")},
		p("pkg/browsertest"):                     {"github.com/chromedp/chromedp"},
		"github.com/chromedp/chromedp":           {"github.com/chromedp/cdproto/runtime"},
		"github.com/chromedp/cdproto/runtime":    nil,
		"os/exec":                                nil,
		"google.golang.org/grpc":                 nil,
		"github.com/elastic/go-elasticsearch/v8": nil,
	}
	got := violations(g, rules())
	want := []string{
		"proto depends on no other workspace module: proto/drplane/v1 → pkg/topology",
		"pkg depends on no service, command or e2e: pkg/apiclient → services/coordinator/internal/auth",
		"pkg depends on no service, command or e2e: pkg/state → services/haagent/internal/observe",
		"cmd depends on no service or e2e: cmd/drctl → pkg/apiclient → services/coordinator/internal/auth",
		"a service depends on no other service, command or e2e: services/haagent/cmd/haagent → e2e/lab",
		"a service depends on no other service, command or e2e: services/reship/internal/capture → services/collector/internal/apply",
		"haagent never depends on the Elasticsearch client: services/haagent/cmd/haagent → services/haagent/internal/observe → services/haagent/internal/audit → github.com/elastic/go-elasticsearch/v8",
		"haagent never depends on the Elasticsearch client: services/haagent/internal/audit → github.com/elastic/go-elasticsearch/v8",
		"haagent never depends on the Elasticsearch client: services/haagent/internal/observe → services/haagent/internal/audit → github.com/elastic/go-elasticsearch/v8",
		"haagent's analysis talks to no server and runs no process: services/haagent/internal/analysis → pkg/mysqld",
		"only pkg/browsertest and tests use the browser driver (chromedp): e2e/example/router → pkg/browsertest",
		"only pkg/browsertest and tests use the browser driver (chromedp): services/coordinator/internal/ui → github.com/chromedp/cdproto/runtime",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/drplane/drplane/pkg/state":                                                  "github.com/drplane/drplane/pkg/state",
		"github.com/drplane/drplane/pkg/state [github.com/drplane/drplane/pkg/state.test]":      "github.com/drplane/drplane/pkg/state",
		"github.com/drplane/drplane/pkg/state.test":                                             "github.com/drplane/drplane/pkg/state",
		"github.com/drplane/drplane/pkg/state_test [github.com/drplane/drplane/pkg/state.test]": "github.com/drplane/drplane/pkg/state",
	} {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
