package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrBuild prefixes every build failure.
var ErrBuild = errors.New("oci: build")

// Options of Build.
type Options struct {
	// RepoRoot is the repository's root (FromRepo files).
	RepoRoot string
	// BinDir holds the static service binaries (FromStaticBuild files).
	BinDir string
	// CACerts replaces the build host's CA bundle when set.
	CACerts string
	// Out receives oci/ (the OCI image layout) and <service>.tar for each
	// service (docker load).
	Out string
	// Repository prefixes every image name, e.g. ghcr.io/drplane.
	Repository string
	// Arch is the GOARCH the binaries were built for.
	Arch string
	Meta Meta
}

// Names of Build's outputs under Options.Out.
const (
	LayoutDir = "oci"
	// RefAnnotation names an image in the layout's index.
	RefAnnotation = "org.opencontainers.image.ref.name"
)

// TarballFile is the name of a service's docker-load tarball under Options.Out.
func TarballFile(service string) string { return service + ".tar" }

// Built is one image Build wrote.
type Built struct {
	Ref    string
	Digest v1.Hash
}

// Build writes the images of every service. The output directory's layout
// and tarball are replaced, so two builds from the same inputs are identical
// byte for byte.
func Build(o Options) ([]Built, error) {
	base, err := o.layer(BaseFiles())
	if err != nil {
		return nil, err
	}
	layoutDir := filepath.Join(o.Out, LayoutDir)
	if err := os.RemoveAll(layoutDir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("%w: layout: %w", ErrBuild, err)
	}
	var built []Built
	for _, s := range Services() {
		img, err := o.image(s, base)
		if err != nil {
			return nil, err
		}
		ref := Reference(o.Repository, s.Name, o.Meta.Version)
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("%w: image name: %w", ErrBuild, err)
		}
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{RefAnnotation: ref})); err != nil {
			return nil, fmt.Errorf("%w: layout %s: %w", ErrBuild, s.Name, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBuild, err)
		}
		// One tarball per image: ggcr writes several images' tarball in map
		// order, which would make the file differ between builds.
		if err := tarball.WriteToFile(filepath.Join(o.Out, TarballFile(s.Name)), tag, img); err != nil {
			return nil, fmt.Errorf("%w: tarball %s: %w", ErrBuild, s.Name, err)
		}
		built = append(built, Built{Ref: ref, Digest: d})
	}
	return built, nil
}

// image is one service's image: the base layer, the binary, the config.
func (o Options) image(s Service, base v1.Layer) (v1.Image, error) {
	bin, err := o.layer([]File{BinaryFile(s.Name)})
	if err != nil {
		return nil, err
	}
	labels := Labels(s, o.Meta)
	created := v1.Time{Time: o.Meta.Created.UTC()}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: o.Arch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			User:       User,
			Entrypoint: Entrypoint(s.Name),
			Env:        []string{PathEnv},
			WorkingDir: "/",
			Labels:     labels,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrBuild, err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "drimage: users, groups and CA certificates"}},
		mutate.Addendum{Layer: bin, History: v1.History{Created: created, CreatedBy: "drimage: static binary " + BinaryFile(s.Name).Path}},
	)
	if err != nil {
		return nil, fmt.Errorf("%w: layers: %w", ErrBuild, err)
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// source is where a file's content is read from.
func (o Options) source(f File) string {
	switch f.Kind {
	case FromRepo:
		return filepath.Join(o.RepoRoot, filepath.FromSlash(f.Source))
	case FromStaticBuild:
		return filepath.Join(o.BinDir, f.Source)
	default:
		if f.Path == CACertsPath && o.CACerts != "" {
			return o.CACerts
		}
		return f.Source
	}
}

// layer is a gzipped tar of files and their parent directories, in path
// order, owned by root, every time Meta.Created: nothing of the build host
// but the content.
func (o Options) layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := o.Meta.Created.UTC()
	dirs := map[string]bool{}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("%w: %s is not absolute", ErrBuild, f.Path)
		}
		var parents []string
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/",
				Mode: 0o755, ModTime: mtime}); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBuild, err)
			}
		}
		content, err := os.ReadFile(o.source(f))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBuild, f.Path, err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"),
			Mode: f.Mode, Size: int64(len(content)), ModTime: mtime}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBuild, err)
		}
		if _, err := tw.Write(content); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBuild, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("%w: layer: %w", ErrBuild, err)
	}
	return l, nil
}
