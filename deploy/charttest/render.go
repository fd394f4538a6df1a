package charttest

import (
	"errors"
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
)

// Paths relative to this module's directory.
const (
	// ChartDir is the drplane chart.
	ChartDir = "../helm/drplane"
	// ExamplesDir holds the three-DC example values of the chart's README.
	ExamplesDir = "../helm/examples"
)

// ErrRender is wrapped by every error of Render and LoadValues.
var ErrRender = errors.New("charttest: render")

// RenderOptions names the release.
type RenderOptions struct {
	// ReleaseName defaults to "drplane".
	ReleaseName string
	// Namespace defaults to "drplane".
	Namespace string
	// KubeVersion is the cluster version the templates see; it defaults to
	// DefaultKubeVersion.
	KubeVersion string
}

// DefaultKubeVersion is the Kubernetes version of the client-go scheme the
// rendered objects are decoded with.
const DefaultKubeVersion = "v1.37.0"

// Release is a rendered release.
type Release struct {
	// Manifest is every rendered object, as `helm template` prints it.
	Manifest string
	// Notes is the rendered NOTES.txt.
	Notes string
}

// LoadValues merges values files in order, as `helm install -f a -f b`.
func LoadValues(files ...string) (map[string]any, error) {
	opts := values.Options{ValueFiles: files}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("%w: values: %w", ErrRender, err)
	}
	return vals, nil
}

// Render installs the chart in chartDir with vals as a client-only dry run:
// the schema is checked, the templates are rendered against Helm's default
// capabilities, and nothing contacts a cluster.
func Render(chartDir string, vals map[string]any, opts RenderOptions) (*Release, error) {
	if opts.ReleaseName == "" {
		opts.ReleaseName = "drplane"
	}
	if opts.Namespace == "" {
		opts.Namespace = "drplane"
	}
	if opts.KubeVersion == "" {
		opts.KubeVersion = DefaultKubeVersion
	}
	kv, err := chartutil.ParseKubeVersion(opts.KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRender, err)
	}
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("%w: load %s: %w", ErrRender, chartDir, err)
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	install := action.NewInstall(cfg)
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = opts.ReleaseName
	install.Namespace = opts.Namespace
	install.KubeVersion = kv
	rel, err := install.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRender, err)
	}
	return &Release{Manifest: rel.Manifest, Notes: rel.Info.Notes}, nil
}

// sourcePrefix starts the comment with which Helm names each object's template.
const sourcePrefix = "# Source: "

// Document is one YAML document of a manifest.
type Document struct {
	// Source is the template that rendered it ("drplane/templates/x.yaml").
	Source string
	// YAML is the document's text.
	YAML string
}

// SplitManifest returns the non-empty documents of a manifest in order.
func SplitManifest(manifest string) []Document {
	var (
		docs  []Document
		cur   Document
		lines []string
		empty = true
	)
	flush := func() {
		if !empty {
			cur.YAML = strings.Join(lines, "\n")
			docs = append(docs, cur)
		}
		cur, lines, empty = Document{}, nil, true
	}
	for _, line := range strings.Split(manifest, "\n") {
		t := strings.TrimRight(line, " \t\r")
		switch {
		case t == "---":
			flush()
			continue
		case strings.HasPrefix(t, sourcePrefix):
			cur.Source = strings.TrimPrefix(t, sourcePrefix)
		case strings.TrimSpace(t) != "" && !strings.HasPrefix(strings.TrimSpace(t), "#"):
			empty = false
		}
		lines = append(lines, line)
	}
	flush()
	return docs
}
