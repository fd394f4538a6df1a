package charttest_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestServicesAcceptRenderedConfig hands every rendered configuration file,
// with the container's environment, to the real service binary's
// --check-config, which loads it the way the pod will (unknown keys are
// errors) and validates it. The binaries come from DRPLANE_BIN (`make
// test-charts` sets it to bin/ after `make build`); this module imports no
// drplane module, so without them the test is skipped.
func TestServicesAcceptRenderedConfig(t *testing.T) {
	bin := os.Getenv("DRPLANE_BIN")
	if bin == "" {
		t.Skip("DRPLANE_BIN is not set: run `make test-charts` to check the files with the service binaries")
	}
	keys := loadKeys(t)
	for _, dc := range exampleDCs() {
		r := renderExample(t, dc)
		for _, comp := range components() {
			t.Run(dc+"/"+comp, func(t *testing.T) {
				exe := filepath.Join(bin, comp)
				_, err := os.Stat(exe)
				require.NoError(t, err, "DRPLANE_BIN has no %s", comp)

				dir := t.TempDir()
				text, _ := r.configText(t, comp)
				text = relocateFiles(t, text, dir)
				cfgPath := filepath.Join(dir, "config.yaml")
				require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, exe, "--check-config", "--config", cfgPath)
				cmd.Env = containerEnv(r.container(t, comp))
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				require.NoError(t, err, "%s --check-config:\n%s%s\nconfig:\n%s", comp, out, stderr.Bytes(), text)
				require.Contains(t, string(out), comp+" configuration is valid")

				// The printed configuration shows every secret that came from
				// a Secret as [redacted]: the variables reached their keys.
				var printed map[string]any
				require.NoError(t, yaml.Unmarshal(out, &printed))
				assert.Equal(t, "pod-"+comp, printed["id"], "DRPLANE_ID")
				for _, e := range r.container(t, comp).Env {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						continue
					}
					for _, k := range keys[comp].secret {
						if envName(k) == e.Name {
							assert.Equal(t, "[redacted]", mustLookup(t, printed, k), "%s from %s", k, e.Name)
						}
					}
				}
			})
		}
	}
}

// relocateFiles moves every *_file path of a configuration under dir and
// creates the files there (validation checks that they exist).
func relocateFiles(t *testing.T, text, dir string) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(text), &doc))
	var files []string
	var walk func(v any)
	walk = func(v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, vv := range m {
			if s, ok := vv.(string); ok && strings.HasSuffix(k, "_file") && s != "" {
				files = append(files, s)
			}
			walk(vv)
		}
	}
	walk(doc)
	for _, f := range files {
		require.True(t, filepath.IsAbs(f), f)
		p := filepath.Join(dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, []byte("placeholder\n"), 0o600))
		text = strings.ReplaceAll(text, f, p)
	}
	return text
}

// containerEnv is the container's environment as the kubelet would give
// it: literal values, the pod name, and a stand-in for each Secret key.
func containerEnv(c corev1.Container) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"=pod-"+c.Name)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"=from-"+e.ValueFrom.SecretKeyRef.Name+"-"+e.ValueFrom.SecretKeyRef.Key)
		}
	}
	return env
}
