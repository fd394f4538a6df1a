package oci_test

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/cmd/drimage/internal/oci"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// stage is a FROM and the instructions up to the next one.
type stage struct {
	from, name string
	body       []instruction
}

// parseDockerfile reads the subset of the Dockerfile syntax the repository's
// Dockerfile uses: comments, instructions, backslash continuations.
func parseDockerfile(t *testing.T, text string) (global []instruction, stages []stage) {
	t.Helper()
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if before, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(before + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	require.Zero(t, cur.Len(), "the Dockerfile ends in a continuation")
	for _, l := range lines {
		cmd, args, _ := strings.Cut(l, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			global = append(global, in)
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return global, stages
}

var labelPair = regexp.MustCompile(`([A-Za-z0-9._-]+)=("(?:[^"\\]|\\.)*"|\S+)`)

// labels parses LABEL k="v" k2=v2 ...
func labels(t *testing.T, args string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range labelPair.FindAllStringSubmatch(args, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			require.NoError(t, json.Unmarshal([]byte(v), &v), "label %s", m[1])
		}
		out[m[1]] = v
	}
	require.NotEmpty(t, out, "LABEL %s", args)
	return out
}

// dfLayout is what a final stage produces: files (image path → where from),
// user, environment, working directory, entrypoint and labels.
type dfLayout struct {
	files      map[string]string
	user, env  string
	workdir    string
	entrypoint []string
	labels     map[string]string
}

// apply folds a stage's instructions into l; ARG values stay as ${NAME}.
func (l *dfLayout) apply(t *testing.T, body []instruction) {
	t.Helper()
	for _, in := range body {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			from := "context:"
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if v, ok := strings.CutPrefix(f[0], "--from="); ok {
					from = v + ":"
				} else {
					t.Fatalf("COPY flag %s: the image builder sets no owner or mode other than its spec", f[0])
				}
				f = f[1:]
			}
			require.GreaterOrEqual(t, len(f), 2, "COPY %s", in.args)
			dst, srcs := f[len(f)-1], f[:len(f)-1]
			for _, src := range srcs {
				p := dst
				if strings.HasSuffix(dst, "/") {
					p = dst + path.Base(src)
				} else {
					require.Len(t, srcs, 1, "COPY of several files to %s, not a directory", dst)
				}
				l.files[p] = from + src
			}
		case "USER":
			l.user = in.args
		case "ENV":
			l.env = in.args
		case "WORKDIR":
			l.workdir = in.args
		case "ENTRYPOINT":
			require.NoError(t, json.Unmarshal([]byte(in.args), &l.entrypoint), "ENTRYPOINT in exec form")
		case "LABEL":
			for k, v := range labels(t, in.args) {
				l.labels[k] = v
			}
		case "ARG":
		default:
			t.Fatalf("%s in a stage of an image: the image builder has no counterpart", in.cmd)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.work above the test")
		dir = parent
	}
}

// TestDockerfileMatchesSpec reads the repository's Dockerfile and checks
// that each service's target yields what the builder writes: the same files
// from the same sources, the same user, environment, working directory,
// entrypoint and labels.
func TestDockerfileMatchesSpec(t *testing.T) {
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	global, stages := parseDockerfile(t, string(text))
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}

	// The build stage runs make static into /out at the version the labels
	// carry, whose default is the chart's appVersion (the images' tag).
	build, ok := byName["build"]
	require.True(t, ok, "a build stage")
	assert.True(t, strings.HasPrefix(build.from, "golang:${GO_VERSION}"), build.from)
	var goVersion string
	for _, in := range global {
		if v, ok := strings.CutPrefix(in.args, "GO_VERSION="); in.cmd == "ARG" && ok {
			goVersion = v
		}
	}
	assert.Regexp(t, `^1\.26\.\d+$`, goVersion, "GO_VERSION: the Go of go.work")
	var runs []string
	for _, in := range build.body {
		if in.cmd == "RUN" {
			runs = append(runs, in.args)
		}
	}
	assert.Equal(t, []string{"make static VERSION=${VERSION} STATIC_DIR=/out"}, runs)
	chart, err := os.ReadFile(filepath.Join(root, "deploy/helm/drplane/Chart.yaml"))
	require.NoError(t, err)
	app := regexp.MustCompile(`(?m)^appVersion: *"?([^"\s]+)"?`).FindSubmatch(chart)
	require.NotNil(t, app, "appVersion in Chart.yaml")
	for _, name := range []string{"build", "base"} {
		assert.Contains(t, byName[name].body, instruction{cmd: "ARG", args: "VERSION=" + string(app[1])},
			"stage %s: VERSION defaults to the chart's appVersion", name)
	}

	base, ok := byName["base"]
	require.True(t, ok, "a base stage")
	require.Equal(t, "scratch", base.from, "the images start empty")

	meta := oci.Meta{Version: "${VERSION}", Revision: "${REVISION}"}
	for _, s := range oci.Services() {
		t.Run(s.Name, func(t *testing.T) {
			st, ok := byName[s.Name]
			require.True(t, ok, "a target named %s", s.Name)
			require.Equal(t, "base", st.from)
			got := dfLayout{files: map[string]string{}, labels: map[string]string{}}
			got.apply(t, base.body)
			got.apply(t, st.body)

			want := map[string]string{}
			for _, f := range append(oci.BaseFiles(), oci.BinaryFile(s.Name)) {
				switch f.Kind {
				case oci.FromRepo:
					want[f.Path] = "context:" + f.Source
				case oci.FromBuildHost:
					want[f.Path] = "build:" + f.Source
				case oci.FromStaticBuild:
					want[f.Path] = "build:/out/" + f.Source
				}
			}
			assert.Equal(t, want, got.files)
			assert.Equal(t, oci.User, got.user)
			assert.Equal(t, oci.PathEnv, got.env)
			assert.Equal(t, "/", got.workdir)
			assert.Equal(t, oci.Entrypoint(s.Name), got.entrypoint)
			wantLabels := oci.Labels(s, meta)
			wantLabels[oci.LabelCreated] = "${CREATED}"
			assert.Equal(t, wantLabels, got.labels)
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	global, stages := parseDockerfile(t, `# comment
ARG A=1
FROM x AS one
LABEL a="b c" \
      d=e
# inside
COPY --from=one /f /g/
FROM one
`)
	assert.Equal(t, []instruction{{"ARG", "A=1"}}, global)
	require.Len(t, stages, 2)
	assert.Equal(t, "one", stages[0].name)
	assert.Equal(t, "one", stages[1].from)
	require.Len(t, stages[0].body, 2)
	assert.Equal(t, map[string]string{"a": "b c", "d": "e"}, labels(t, stages[0].body[0].args))
	l := dfLayout{files: map[string]string{}, labels: map[string]string{}}
	l.apply(t, stages[0].body)
	assert.Equal(t, map[string]string{"/g/f": "one:/f"}, l.files)
}
