// Command drimage builds drplane's service images from static binaries
// without a container engine or registry: an OCI image layout and a tarball
// for `docker load` / `podman load` (make images runs it).
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/drplane/drplane/cmd/drimage/internal/oci"
)

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "drimage: %v\n", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	var o oci.Options
	var created int64
	cmd := &cobra.Command{
		Use:           "drimage",
		Short:         "build the service images (OCI layout and docker-load tarball) from static binaries",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Meta.Created = time.Unix(created, 0).UTC()
			built, err := oci.Build(o)
			if err != nil {
				return err
			}
			for _, b := range built {
				fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\n", b.Ref, b.Digest)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.RepoRoot, "repo-root", ".", "the repository's root")
	f.StringVar(&o.BinDir, "bin", "", "directory of the static service binaries (make static)")
	f.StringVar(&o.Out, "out", "", "output directory (oci/ and <service>.tar)")
	f.StringVar(&o.CACerts, "ca-certs", "", "CA bundle to ship (default: the build host's "+oci.CACertsPath+")")
	f.StringVar(&o.Repository, "repository", "ghcr.io/drplane", "image name prefix: <repository>/<service>:<version>")
	f.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the binaries")
	f.StringVar(&o.Meta.Version, "version", "", "version: the image tag and label (the binaries' stamped version)")
	f.StringVar(&o.Meta.Revision, "revision", "unknown", "source revision label")
	f.Int64Var(&created, "created", 0, "creation time, Unix seconds (SOURCE_DATE_EPOCH; the commit's time)")
	for _, req := range []string{"bin", "out", "version"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}
