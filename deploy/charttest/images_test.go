package charttest_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"

	"github.com/drplane/drplane/deploy/charttest"
)

// images is the OCI layout of `make images`, opened once.
type images struct {
	path  layout.Path
	byRef map[string]v1.Hash
	// binaries extracted from the images, by component.
	mu   sync.Mutex
	bins map[string]string
	dir  string
}

// openImages opens DRPLANE_IMAGES (make test sets it to build/images/oci
// after make images); without it the tests are skipped.
func openImages(t *testing.T) *images {
	t.Helper()
	dir := os.Getenv("DRPLANE_IMAGES")
	if dir == "" {
		t.Skip("DRPLANE_IMAGES is not set: run `make images test-charts` to check the images against the chart")
	}
	p, err := layout.FromPath(dir)
	require.NoError(t, err, "DRPLANE_IMAGES is no OCI layout")
	idx, err := p.ImageIndex()
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	byRef := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		byRef[d.Annotations["org.opencontainers.image.ref.name"]] = d.Digest
	}
	return &images{path: p, byRef: byRef, bins: map[string]string{}, dir: t.TempDir()}
}

// image returns the layout's image the chart names.
func (im *images) image(t *testing.T, ref string) v1.Image {
	t.Helper()
	d, ok := im.byRef[ref]
	require.True(t, ok, "the chart's image %s is not in the layout (it has %v)", ref, im.byRef)
	img, err := im.path.Image(d)
	require.NoError(t, err)
	return img
}

// imageFiles reads the flattened filesystem of img: path → header and, for
// regular files, content.
func imageFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		require.NoError(t, err)
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			data[h.Name] = b
		}
	}
}

// binary extracts component's binary from its image (once) and returns its
// path on this machine.
func (im *images) binary(t *testing.T, component string, img v1.Image) string {
	t.Helper()
	im.mu.Lock()
	defer im.mu.Unlock()
	if p, ok := im.bins[component]; ok {
		return p
	}
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Len(t, cf.Config.Entrypoint, 1)
	_, data := imageFiles(t, img)
	content, ok := data[strings.TrimPrefix(cf.Config.Entrypoint[0], "/")]
	require.True(t, ok, "the entrypoint %s is a file of the image", cf.Config.Entrypoint[0])
	p := filepath.Join(im.dir, component)
	require.NoError(t, os.WriteFile(p, content, 0o700))
	im.bins[component] = p
	return p
}

// TestImagesMatchChart renders each example DC with the chart's default
// image settings and checks, for every service, that the image the chart
// names is in the layout of `make images`, runs as the chart's non-root
// user, has the service binary as entrypoint (the chart passes only
// arguments), carries its labels, and holds nothing but the users, the CA
// bundle and a static binary: no shell.
func TestImagesMatchChart(t *testing.T) {
	im := openImages(t)
	ch, err := loader.Load(charttest.ChartDir)
	require.NoError(t, err)
	appVersion := ch.Metadata.AppVersion
	for _, dc := range exampleDCs() {
		r := renderExample(t, dc, del("image"))
		for _, comp := range components() {
			t.Run(dc+"/"+comp, func(t *testing.T) {
				c := r.container(t, comp)
				assert.Equal(t, "ghcr.io/drplane/"+comp+":"+appVersion, c.Image)
				img := im.image(t, c.Image)
				cf, err := img.ConfigFile()
				require.NoError(t, err)

				assert.Equal(t, []string{"/usr/local/bin/" + comp}, cf.Config.Entrypoint)
				assert.Empty(t, c.Command, "the chart keeps the image's entrypoint")
				assert.Equal(t, []string{"--config", "/etc/drplane/config/config.yaml"}, c.Args)

				uid, gid, ok := strings.Cut(cf.Config.User, ":")
				require.True(t, ok, "user %q is uid:gid", cf.Config.User)
				u, err := strconv.ParseInt(uid, 10, 64)
				require.NoError(t, err, "a numeric user, for runAsNonRoot")
				g, err := strconv.ParseInt(gid, 10, 64)
				require.NoError(t, err)
				assert.NotZero(t, u, "not root")
				pod := r.deployment(t, comp).Spec.Template.Spec.SecurityContext
				require.NotNil(t, pod.RunAsUser)
				assert.Equal(t, u, *pod.RunAsUser, "the chart's runAsUser is the image's user")
				assert.Equal(t, g, *pod.RunAsGroup)

				assert.Equal(t, comp, cf.Config.Labels["org.opencontainers.image.title"])
				assert.Equal(t, appVersion, cf.Config.Labels["org.opencontainers.image.version"])
				for _, k := range []string{"description", "revision", "created", "source", "url"} {
					assert.NotEmpty(t, cf.Config.Labels["org.opencontainers.image."+k], k)
				}

				hdrs, data := imageFiles(t, img)
				for _, sh := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"} {
					assert.NotContains(t, hdrs, sh, "no shell")
				}
				var regular []string
				for n, h := range hdrs {
					if h.Typeflag != tar.TypeDir {
						regular = append(regular, n)
					}
					assert.Zero(t, h.Uid, "%s is root's: the service cannot change it", n)
				}
				assert.ElementsMatch(t, []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt",
					"usr/local/bin/" + comp}, regular)
				assert.Contains(t, string(data["etc/passwd"]), ":"+uid+":"+gid+":", "the user has a passwd entry")
				assert.Contains(t, string(data["etc/ssl/certs/ca-certificates.crt"]), "-----BEGIN CERTIFICATE-----")
			})
		}
	}
}

// TestImageBinariesAcceptRenderedConfig extracts each service's binary from
// its image and checks it: statically linked, built with -trimpath and
// CGO_ENABLED=0 (its build information; -trimpath leaves -ldflags out of
// it), stamped with the image's version (--version), and it
// accepts the configuration file the chart renders for every example DC,
// with the container's environment (--check-config).
func TestImageBinariesAcceptRenderedConfig(t *testing.T) {
	im := openImages(t)
	for _, dc := range exampleDCs() {
		r := renderExample(t, dc, del("image"))
		for _, comp := range components() {
			t.Run(dc+"/"+comp, func(t *testing.T) {
				c := r.container(t, comp)
				img := im.image(t, c.Image)
				exe := im.binary(t, comp, img)
				cf, err := img.ConfigFile()
				require.NoError(t, err)
				version := cf.Config.Labels["org.opencontainers.image.version"]

				f, err := elf.Open(exe)
				require.NoError(t, err)
				for _, p := range f.Progs {
					assert.NotEqual(t, elf.PT_INTERP, p.Type, "statically linked: no program interpreter")
				}
				require.NoError(t, f.Close())
				info, err := buildinfo.ReadFile(exe)
				require.NoError(t, err)
				settings := map[string]string{}
				for _, s := range info.Settings {
					settings[s.Key] = s.Value
				}
				assert.Equal(t, "0", settings["CGO_ENABLED"])
				assert.Equal(t, "true", settings["-trimpath"])

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, exe, "--version").Output()
				require.NoError(t, err)
				assert.Equal(t, comp+" "+version+"\n", string(out))

				dir := t.TempDir()
				text, _ := r.configText(t, comp)
				text = relocateFiles(t, text, dir)
				cfgPath := filepath.Join(dir, "config.yaml")
				require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))
				// The container's arguments, with the file where this test wrote it.
				args := append([]string{"--check-config"}, c.Args...)
				args[len(args)-1] = cfgPath
				cmd := exec.CommandContext(ctx, exe, args...)
				cmd.Env = containerEnv(c)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err = cmd.Output()
				require.NoError(t, err, "%s --check-config:\n%s%s\nconfig:\n%s", comp, out, stderr.Bytes(), text)
				require.Contains(t, string(out), comp+" configuration is valid")
				var printed map[string]any
				require.NoError(t, yaml.Unmarshal(out, &printed))
				assert.Equal(t, dc, printed["dc"])
			})
		}
	}
}
