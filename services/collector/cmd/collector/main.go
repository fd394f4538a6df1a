// Command collector applies the changes other DCs shipped to this DC (see
// --help for what this release implements).
package main

import (
	"os"

	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/collector/internal/collector"
)

func main() {
	os.Exit(daemon.Main(collector.Spec(collector.DefaultConfig()), os.Args[1:], os.Stdout, os.Stderr))
}
