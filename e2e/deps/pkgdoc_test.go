package deps_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// skipDir reports directories that hold no workspace packages: tool and lab
// output, test data, VCS metadata.
func skipDir(name string) bool {
	switch name {
	case "testdata", "vendor", "node_modules":
		return true
	}
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// generated reports Go files written by code generators (protoc plugins).
func generated(name string) bool {
	return strings.Contains(name, ".pb.") || strings.HasSuffix(name, ".pb.go")
}

// undocumented walks root and returns the directories (relative to root)
// whose non-test, non-generated Go files all lack a package doc comment.
func undocumented(t *testing.T, root string) []string {
	t.Helper()
	type pkgDoc struct{ files, documented int }
	pkgs := map[string]*pkgDoc{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || generated(name) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		p := pkgs[dir]
		if p == nil {
			p = &pkgDoc{}
			pkgs[dir] = p
		}
		p.files++
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.documented++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatalf("no Go packages under %s", root)
	}
	t.Logf("%d package directories under %s", len(pkgs), root)
	var missing []string
	for dir, p := range pkgs {
		if p.documented == 0 {
			missing = append(missing, filepath.ToSlash(dir))
		}
	}
	sort.Strings(missing)
	return missing
}

func TestEveryPackageHasDoc(t *testing.T) {
	if missing := undocumented(t, workspaceRoot(t)); len(missing) > 0 {
		t.Errorf("packages without a package doc comment (add a doc.go):\n  %s", strings.Join(missing, "\n  "))
	}
}

func TestUndocumentedPackageIsFound(t *testing.T) {
	root := t.TempDir()
	write := func(rel, src string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("good/doc.go", "// Package good is documented.\npackage good\n")
	write("good/good.go", "package good\n")
	write("bad/bad.go", "// Not a doc comment: a blank line follows.\n\npackage bad\n")
	write("bad/bad_test.go", "// Package bad has its doc only in a test file.\npackage bad\n")
	write("gen/gen.pb.go", "package gen\n")
	write("good/testdata/x/x.go", "package x\n")
	write(".hidden/h.go", "package h\n")
	write("cmd/tool/main.go", "// Command tool does things.\npackage main\n")

	got := undocumented(t, root)
	if len(got) != 1 || got[0] != "bad" {
		t.Errorf("undocumented = %v, want [bad]", got)
	}
}
