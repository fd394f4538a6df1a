package charttest_test

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/drplane/drplane/deploy/charttest"
)

// exampleDCs are the DCs of the example (deploy/helm/examples).
func exampleDCs() []string { return []string{"dc-a1", "dc-a2", "dc-b1"} }

// components are the chart's services.
func components() []string { return []string{"coordinator", "haagent", "reship", "collector"} }

// namespace is where every test release goes.
const namespace = "drplane"

// exampleValues merges common.yaml and the DC's file, as the README installs
// them, then applies each edit.
func exampleValues(t *testing.T, dc string, edits ...func(map[string]any)) map[string]any {
	t.Helper()
	vals, err := charttest.LoadValues(
		filepath.Join(charttest.ExamplesDir, "common.yaml"),
		filepath.Join(charttest.ExamplesDir, dc+".yaml"),
	)
	require.NoError(t, err)
	for _, e := range edits {
		e(vals)
	}
	return vals
}

// set returns an edit that sets the value at a dotted path, creating maps.
func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		parts := strings.Split(path, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
}

// del returns an edit that removes the value at a dotted path.
func del(path string) func(map[string]any) {
	return func(m map[string]any) {
		parts := strings.Split(path, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				return
			}
			m = next
		}
		delete(m, parts[len(parts)-1])
	}
}

// release is a rendered and strictly decoded release of one DC.
type release struct {
	dc      string
	name    string
	vals    map[string]any
	rel     *charttest.Release
	objects []charttest.Object
}

// render renders the chart for dc with vals and decodes every object.
func render(t *testing.T, dc string, vals map[string]any) *release {
	t.Helper()
	name := "drplane-" + dc
	rel, err := charttest.Render(charttest.ChartDir, vals, charttest.RenderOptions{ReleaseName: name, Namespace: namespace})
	require.NoError(t, err)
	dec, err := charttest.NewDecoder()
	require.NoError(t, err)
	objs, err := dec.DecodeManifest(rel.Manifest)
	require.NoError(t, err, "strict decoding of the rendered manifest")
	require.NotEmpty(t, objs)
	return &release{dc: dc, name: name, vals: vals, rel: rel, objects: objs}
}

// renderExample renders the example values of dc.
func renderExample(t *testing.T, dc string, edits ...func(map[string]any)) *release {
	t.Helper()
	return render(t, dc, exampleValues(t, dc, edits...))
}

// objectName is the name of a component's object, "" for the component
// itself.
func (r *release) objectName(component, suffix string) string {
	n := r.name + "-" + component
	if suffix != "" {
		n += "-" + suffix
	}
	return n
}

// find returns the objects of type T, by name.
func find[T interface{ GetName() string }](r *release) map[string]T {
	out := map[string]T{}
	for _, o := range r.objects {
		if v, ok := o.Obj.(T); ok {
			out[v.GetName()] = v
		}
	}
	return out
}

func (r *release) deployment(t *testing.T, component string) *appsv1.Deployment {
	t.Helper()
	d, ok := find[*appsv1.Deployment](r)[r.objectName(component, "")]
	require.True(t, ok, "Deployment of %s", component)
	return d
}

// container returns the one container of a component's pod.
func (r *release) container(t *testing.T, component string) corev1.Container {
	t.Helper()
	cs := r.deployment(t, component).Spec.Template.Spec.Containers
	require.Len(t, cs, 1)
	return cs[0]
}

// configText returns the configuration file of a component, from its Secret
// or ConfigMap, and the kind it came from.
func (r *release) configText(t *testing.T, component string) (string, string) {
	t.Helper()
	name := r.objectName(component, "config")
	if s, ok := find[*corev1.Secret](r)[name]; ok {
		if v, ok := s.StringData["config.yaml"]; ok {
			return v, "Secret"
		}
		v, ok := s.Data["config.yaml"]
		require.True(t, ok, "Secret %s has config.yaml", name)
		return string(v), "Secret"
	}
	cm, ok := find[*corev1.ConfigMap](r)[name]
	require.True(t, ok, "no Secret or ConfigMap %s", name)
	v, ok := cm.Data["config.yaml"]
	require.True(t, ok, "ConfigMap %s has config.yaml", name)
	return v, "ConfigMap"
}

// config parses a component's configuration file.
func (r *release) config(t *testing.T, component string) map[string]any {
	t.Helper()
	text, _ := r.configText(t, component)
	var m map[string]any
	require.NoError(t, yaml.UnmarshalStrict([]byte(text), &m), "%s config.yaml:\n%s", component, text)
	return m
}

// keyPaths flattens a parsed YAML document into its key paths: nested maps
// join with ".", a list of maps becomes path[].key, any other value (also a
// list) is a leaf.
func keyPaths(m map[string]any) []string {
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, vv)
			}
		case []any:
			if len(x) > 0 {
				if _, ok := x[0].(map[string]any); ok {
					for _, e := range x {
						walk(prefix+"[]", e)
					}
					return
				}
			}
			out = append(out, prefix)
		default:
			out = append(out, prefix)
		}
	}
	walk("", m)
	sort.Strings(out)
	return slices.Compact(out)
}

// lookup returns the value at a dotted path of a parsed document.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}
