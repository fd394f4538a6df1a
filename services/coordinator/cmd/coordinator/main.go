// Command coordinator serves drplane's control API (see --help for what this
// release implements).
package main

import (
	"os"

	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
)

func main() {
	os.Exit(daemon.Main(coordinator.Spec(coordinator.DefaultConfig()), os.Args[1:], os.Stdout, os.Stderr))
}
