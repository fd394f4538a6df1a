package oci_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/cmd/drimage/internal/oci"
)

// fixture writes stand-in binaries and a CA bundle and returns options
// building from them into out.
func fixture(t *testing.T, out string) oci.Options {
	t.Helper()
	bin := t.TempDir()
	for _, s := range oci.Services() {
		require.NoError(t, os.WriteFile(filepath.Join(bin, s.Name), []byte("binary of "+s.Name), 0o700))
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600))
	return oci.Options{
		RepoRoot: repoRoot(t), BinDir: bin, CACerts: ca, Out: out,
		Repository: "registry.example/drplane", Arch: "amd64",
		Meta: oci.Meta{Version: "1.2.3", Revision: "abc123", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
}

// files lists an image's flattened filesystem: path → mode and owner.
func files(t *testing.T, img v1.Image) map[string]tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	out := map[string]tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[h.Name] = *h
	}
}

func TestBuildWritesTheSpec(t *testing.T) {
	out := t.TempDir()
	o := fixture(t, out)
	built, err := oci.Build(o)
	require.NoError(t, err)
	require.Len(t, built, len(oci.Services()))

	lp, err := layout.FromPath(filepath.Join(out, oci.LayoutDir))
	require.NoError(t, err)
	idx, err := lp.ImageIndex()
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, len(oci.Services()))

	for i, s := range oci.Services() {
		t.Run(s.Name, func(t *testing.T) {
			desc := im.Manifests[i]
			ref := "registry.example/drplane/" + s.Name + ":1.2.3"
			assert.Equal(t, ref, desc.Annotations[oci.RefAnnotation])
			assert.Equal(t, types.OCIManifestSchema1, desc.MediaType)
			assert.Equal(t, oci.Built{Ref: ref, Digest: desc.Digest}, built[i])
			img, err := lp.Image(desc.Digest)
			require.NoError(t, err)

			cf, err := img.ConfigFile()
			require.NoError(t, err)
			assert.Equal(t, "linux", cf.OS)
			assert.Equal(t, "amd64", cf.Architecture)
			assert.Equal(t, "65532:65532", cf.Config.User)
			assert.Equal(t, []string{"/usr/local/bin/" + s.Name}, cf.Config.Entrypoint)
			assert.Empty(t, cf.Config.Cmd)
			assert.Equal(t, []string{"PATH=/usr/local/bin"}, cf.Config.Env)
			assert.Equal(t, map[string]string{
				"org.opencontainers.image.title":       s.Name,
				"org.opencontainers.image.description": s.Description,
				"org.opencontainers.image.version":     "1.2.3",
				"org.opencontainers.image.revision":    "abc123",
				"org.opencontainers.image.created":     "2026-01-02T03:04:05Z",
				"org.opencontainers.image.source":      "https://github.com/drplane/drplane",
				"org.opencontainers.image.url":         "https://github.com/drplane/drplane",
			}, cf.Config.Labels)
			m, err := img.Manifest()
			require.NoError(t, err)
			assert.Equal(t, cf.Config.Labels, m.Annotations)
			require.Len(t, m.Layers, 2)

			fs := files(t, img)
			names := make([]string, 0, len(fs))
			for n := range fs {
				names = append(names, n)
			}
			sort.Strings(names)
			assert.Equal(t, []string{"etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs",
				"etc/ssl/certs/ca-certificates.crt", "usr", "usr/local", "usr/local/bin", "usr/local/bin/" + s.Name}, names,
				"nothing but the users, the CA bundle and the binary: no shell")
			for n, h := range fs {
				assert.Zero(t, h.Uid, n)
				assert.Zero(t, h.Gid, n)
				assert.True(t, h.ModTime.Equal(o.Meta.Created), "%s: %v", n, h.ModTime)
			}
			assert.Equal(t, int64(0o755), fs["usr/local/bin/"+s.Name].Mode)
			assert.Equal(t, int64(0o644), fs["etc/passwd"].Mode)
		})
	}

	// Each tarball holds the same image (config and layers; docker load
	// makes its own manifest) under the same name.
	for i, s := range oci.Services() {
		tag, err := name.NewTag(built[i].Ref)
		require.NoError(t, err)
		fromTar, err := tarball.ImageFromPath(filepath.Join(out, oci.TarballFile(s.Name)), &tag)
		require.NoError(t, err, built[i].Ref)
		tm, err := fromTar.Manifest()
		require.NoError(t, err)
		lm, err := lp.Image(built[i].Digest)
		require.NoError(t, err)
		want, err := lm.Manifest()
		require.NoError(t, err)
		assert.Equal(t, want.Config.Digest, tm.Config.Digest, s.Name)
		require.Len(t, tm.Layers, len(want.Layers))
		for j := range want.Layers {
			assert.Equal(t, want.Layers[j].Digest, tm.Layers[j].Digest, "%s layer %d", s.Name, j)
		}
	}
}

// TestBuildIsReproducible builds twice from the same inputs into different
// directories (and a rebuild over the first): the same digests, the same
// bytes.
func TestBuildIsReproducible(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	oa := fixture(t, a)
	first, err := oci.Build(oa)
	require.NoError(t, err)
	ob := oa
	ob.Out = b
	second, err := oci.Build(ob)
	require.NoError(t, err)
	assert.Equal(t, first, second)
	again, err := oci.Build(oa)
	require.NoError(t, err)
	assert.Equal(t, first, again, "a rebuild over a previous output")
	for _, f := range []string{oci.TarballFile("coordinator"), oci.TarballFile("collector"), filepath.Join(oci.LayoutDir, "index.json")} {
		x, err := os.ReadFile(filepath.Join(a, f))
		require.NoError(t, err)
		y, err := os.ReadFile(filepath.Join(b, f))
		require.NoError(t, err)
		assert.Equal(t, x, y, f)
	}

	// Another time of creation is another image.
	oc := oa
	oc.Out = t.TempDir()
	oc.Meta.Created = oa.Meta.Created.Add(time.Second)
	third, err := oci.Build(oc)
	require.NoError(t, err)
	assert.NotEqual(t, first[0].Digest, third[0].Digest)
}

func TestBuildNamesAMissingBinary(t *testing.T) {
	o := fixture(t, t.TempDir())
	require.NoError(t, os.Remove(filepath.Join(o.BinDir, "reship")))
	_, err := oci.Build(o)
	require.ErrorIs(t, err, oci.ErrBuild)
	assert.Contains(t, err.Error(), "/usr/local/bin/reship")
}
