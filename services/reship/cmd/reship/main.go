// Command reship captures a DC's committed writes and ships them to the
// other DCs (see --help for what this release implements).
package main

import (
	"os"

	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/reship/internal/reship"
)

func main() {
	os.Exit(daemon.Main(reship.Spec(reship.DefaultConfig()), os.Args[1:], os.Stdout, os.Stderr))
}
