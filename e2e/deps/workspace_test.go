package deps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// modulePrefix is the import path prefix of every workspace module.
const modulePrefix = "github.com/drplane/drplane/"

// workspaceRoot returns the directory holding go.work, found upwards from the
// test's working directory.
func workspaceRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test directory: run the tests inside the workspace")
		}
		dir = parent
	}
}

// goTool returns the go command the tests run with.
func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	return p
}
