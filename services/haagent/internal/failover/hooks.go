package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// ErrHookFailed means a hook exited non-zero, could not start or timed out.
var ErrHookFailed = errors.New("failover: hook failed")

// Hooks are commands run around failovers and switchovers. Each command is
// an argument vector (no shell) whose arguments may hold {placeholders}:
// {id} {kind} {dc} {cluster} {old_master} {old_addr} {new_master} {analysis}
// {error}. The same values are in the environment as DRPLANE_FAILOVER_ID,
// DRPLANE_KIND, DRPLANE_DC, DRPLANE_CLUSTER, DRPLANE_OLD_MASTER,
// DRPLANE_OLD_ADDR, DRPLANE_NEW_MASTER, DRPLANE_ANALYSIS, DRPLANE_ERROR and
// DRPLANE_HOOK.
//
// A hook does not inherit the agent's environment (it holds the MySQL and
// etcd credentials): it gets only PATH, HOME, LANG, LC_ALL, TZ and TMPDIR
// from it, plus the DRPLANE_* values. Its output is redacted (the agent's
// secrets and anything shaped like "password=…") before it is logged or
// stored in a failover record, which viewers can read. A command that
// leaves a child holding its output is cut off WaitDelay after its
// timeout.
type Hooks struct {
	// PreFailover runs before any instance changes; a non-zero exit aborts
	// the failover or switchover.
	PreFailover [][]string `yaml:"pre_failover"`
	// Fence fences the old master out of band (power it off, kill its
	// process, cut it off from every client) before an automatic failover
	// promotes another instance, unless the agent confirmed it read-only
	// over SQL first. It must exit 0 only once the old master can no
	// longer answer any client as it was: a paused or partitioned master
	// cannot be fenced over SQL, and when it resumes it would answer
	// read_only=0 beside the new master until the agent reaches it. When
	// set, a failover whose old master is fenced neither way fails (and is
	// retried) instead of promoting. See docs/adr/0008-fencing-a-lost-master.md.
	Fence [][]string `yaml:"fence"`
	// PostSuccess and PostFailure run after the outcome is known; their
	// exit status is logged and recorded, nothing more.
	PostSuccess [][]string `yaml:"post_success"`
	PostFailure [][]string `yaml:"post_failure"`
	// Timeout bounds each command (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Secrets are redacted from the commands' output (set by the agent
	// from its configuration, never from YAML).
	Secrets []string `yaml:"-"`
}

// hookWaitDelay is how long a hook's output pipes may stay open after the
// command exited or was killed (a grandchild holding them).
const hookWaitDelay = time.Second

// passedEnv are the variables a hook gets from the agent's environment.
var passedEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// secretShaped matches key=value or key: value pairs whose key names a
// credential.
var secretShaped = regexp.MustCompile(`(?i)((?:password|passwd|pwd|secret|token|api[_-]?key)["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)`)

// Redact removes the secrets and credential-shaped values from s.
func (h Hooks) Redact(s string) string {
	for _, sec := range h.Secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return secretShaped.ReplaceAllString(s, "${1}[REDACTED]")
}

// HookVars are the values substituted into hook commands.
type HookVars struct {
	ID, Kind, DC, Cluster, OldMaster, OldAddr, NewMaster, Analysis, Error string
}

func (v HookVars) pairs() [][2]string {
	return [][2]string{
		{"id", v.ID}, {"kind", v.Kind}, {"dc", v.DC}, {"cluster", v.Cluster},
		{"old_master", v.OldMaster}, {"old_addr", v.OldAddr}, {"new_master", v.NewMaster}, {"analysis", v.Analysis}, {"error", v.Error},
	}
}

// Expand substitutes the placeholders in args.
func (v HookVars) Expand(args []string) []string {
	pairs := v.pairs()
	repl := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		repl = append(repl, "{"+p[0]+"}", p[1])
	}
	r := strings.NewReplacer(repl...)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

func (v HookVars) env(hook string) []string {
	env := []string{"DRPLANE_HOOK=" + hook}
	for _, k := range passedEnv {
		if val, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+val)
		}
	}
	for _, p := range v.pairs() {
		name := "DRPLANE_" + strings.ToUpper(p[0])
		if p[0] == "id" {
			name = "DRPLANE_FAILOVER_ID"
		}
		env = append(env, name+"="+p[1])
	}
	return env
}

// Run runs the commands of one hook in order and stops at the first
// failure, returning ErrHookFailed with the command's output tail.
func (h Hooks) Run(ctx context.Context, hook string, cmds [][]string, v HookVars) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	for _, c := range cmds {
		if len(c) == 0 {
			continue
		}
		args := v.Expand(c)
		cctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(cctx, args[0], args[1:]...)
		cmd.Env = v.env(hook)
		cmd.WaitDelay = hookWaitDelay
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			tail := h.Redact(strings.TrimSpace(out.String()))
			if len(tail) > 512 {
				tail = tail[len(tail)-512:]
			}
			return fmt.Errorf("%w: %s %q: %w: %s", ErrHookFailed, hook, args[0], err, tail)
		}
	}
	return nil
}
