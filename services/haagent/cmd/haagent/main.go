// Command haagent is the per-DC MySQL HA agent (see --help for what this
// release implements).
package main

import (
	"os"

	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/services/haagent/internal/agent"
)

func main() {
	os.Exit(daemon.Main(agent.Spec(agent.DefaultConfig()), os.Args[1:], os.Stdout, os.Stderr))
}
