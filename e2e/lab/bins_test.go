package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// bins returns a directory holding every drplane binary: $DRPLANE_BIN when
// set (make test builds them first), otherwise a fresh go build.
func bins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if d := os.Getenv("DRPLANE_BIN"); d != "" {
			binDir = d
			return
		}
		dir, err := os.MkdirTemp("", "drplane-bin-")
		if err != nil {
			binErr = err
			return
		}
		targets := map[string]string{
			"coordinator": "github.com/drplane/drplane/services/coordinator/cmd/coordinator",
			"haagent":     "github.com/drplane/drplane/services/haagent/cmd/haagent",
			"reship":      "github.com/drplane/drplane/services/reship/cmd/reship",
			"collector":   "github.com/drplane/drplane/services/collector/cmd/collector",
			"drctl":       "github.com/drplane/drplane/cmd/drctl",
			"drlab":       "github.com/drplane/drplane/cmd/drlab",
		}
		for name, pkg := range targets {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
			if err != nil {
				binErr = &buildError{pkg: pkg, out: string(out), err: err}
				return
			}
		}
		binDir = dir
	})
	if binErr != nil {
		t.Fatalf("build binaries: %v", binErr)
	}
	for _, b := range []string{"coordinator", "haagent", "reship", "collector", "drctl", "drlab"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			t.Fatalf("binary %s missing in %s (run make build): %v", b, binDir, err)
		}
	}
	return binDir
}

type buildError struct {
	pkg, out string
	err      error
}

func (e *buildError) Error() string { return e.pkg + ": " + e.err.Error() + "\n" + e.out }
