// Package browsertest drives headless chromium for tests of the web
// dashboard: one browser process per test, isolated tabs (each its own
// session), bounded steps, reads in one JavaScript evaluation, clicks that
// survive a live re-render, screenshots kept as artifacts, and the
// dashboard's token login. Only tests import it (a rule in e2e/deps): no
// binary links a browser driver.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/check"
)

// StepTimeout bounds one browser step (a navigation, a wait for a node).
const StepTimeout = 15 * time.Second

// Chromium finds the browser to drive: $DRPLANE_CHROMIUM, else Debian's
// chromium on the PATH (make deps-chromium installs it). Without one the
// test is skipped.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DRPLANE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on the PATH and DRPLANE_CHROMIUM unset: the dashboard's browser tests need it (make deps-chromium installs Debian's chromium)")
	return ""
}

// Browser is one headless chromium process, 1280×800, stopped at the end
// of the test that started it.
type Browser struct {
	root context.Context
}

// New starts the browser.
func New(t testing.TB) *Browser {
	t.Helper()
	exe := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(1280, 800),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// The first context starts the browser; tabs are opened from it.
	root, rcancel := chromedp.NewContext(alloc)
	t.Cleanup(rcancel)
	// (The first Do's context is the browser's lifetime: no timeout here.)
	require.NoError(t, chromedp.Do(root), "start %s", exe)
	return &Browser{root: root}
}

// Tab is one tab of a Browser, in a browser context of its own (its own
// memory, so its own session). Its steps fail t.
type Tab struct {
	t   testing.TB
	ctx context.Context
	// retried counts the clicks tried again because a re-render replaced
	// their node (ClickRetries).
	retried int
}

// Tab opens a new, isolated tab, closed at the end of t. An uncaught
// exception of its page or a console.error (the page reports content
// security policy violations so) fails t; other console messages are
// logged.
func (b *Browser) Tab(t testing.TB) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	// Open the tab now (without a timeout: the first Do's context is the
	// tab's lifetime), so that later steps are bounded by StepTimeout.
	require.NoError(t, chromedp.Do(ctx))
	exceptions := chromedp.Events(ctx, cdpruntime.ExceptionThrown)
	console := chromedp.Events(ctx, cdpruntime.ConsoleAPICalled)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			t.Errorf("page exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range console {
			if err != nil {
				return
			}
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value), a.Description)
			}
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError {
				t.Errorf("page console.error: %s", strings.Join(parts, " "))
				continue
			}
			t.Logf("console.%s: %s", ev.Type, strings.Join(parts, " "))
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &Tab{t: t, ctx: ctx}
}

// Context is the tab's chromedp context, for actions this package does
// not wrap.
func (p *Tab) Context() context.Context { return p.ctx }

// Do runs steps within StepTimeout.
func (p *Tab) Do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	_ = Get(p, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for _, s := range steps {
			if _, err := s(ctx, tg); err != nil {
				return chromedp.Void{}, err
			}
		}
		return chromedp.Void{}, nil
	})
}

// Get runs one action within StepTimeout and returns its value.
func Get[T any](p *Tab, a chromedp.Action[T]) T {
	p.t.Helper()
	v, err := run(p.ctx, StepTimeout, a)
	if errors.Is(err, context.DeadlineExceeded) {
		p.t.Fatalf("browser step timed out after %s; page text:\n%s", StepTimeout, p.pageText())
	}
	require.NoError(p.t, err)
	return v
}

// Eval evaluates a JavaScript expression in the page and returns its value.
func Eval[T any](p *Tab, js string) T {
	p.t.Helper()
	return Get(p, chromedp.Evaluate[T](js))
}

func run[T any](ctx context.Context, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Run(sctx, a)
}

// pageText is the text of the page, for a failure message.
func (p *Tab) pageText() string {
	body, _ := run(p.ctx, time.Second, chromedp.Evaluate[string](`document.body.innerText`))
	return body
}

// nodeGone reports whether err is the browser's answer about a node that
// left the document between chromedp's query and its next call on the node
// (a live update re-rendered the view).
func nodeGone(err error) bool {
	var e *cdproto.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Message {
	case "No node with given id found", "Could not find node with given id",
		"Node is detached from document", "Could not compute content quads.":
		return true
	}
	return false
}

// Click clicks the first node matching the CSS selector sel. chromedp
// finds the node, waits until it is visible, and then scrolls it into view
// and clicks its position, in separate calls to the browser; when a live
// update replaced the node after the wait (nothing was clicked then), it
// tries again on the node that replaced it, within StepTimeout.
//
// It does not promise a click on a page that never holds still: chromedp's
// wait starts over on its own while the node it found leaves the document
// before it is seen visible (a few round trips to the browser), so a page
// that replaces the node faster than that, whatever the reason, times the
// click out.
func (p *Tab) Click(sel string) {
	p.t.Helper()
	check.For(p.t, StepTimeout, 20*time.Millisecond, func() error {
		_, err := run(p.ctx, StepTimeout, chromedp.Click(chromedp.CSS(sel)))
		if err != nil && nodeGone(err) {
			p.retried++
			return fmt.Errorf("click %s: %w", sel, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			p.t.Fatalf("click %s timed out after %s; page text:\n%s", sel, StepTimeout, p.pageText())
		}
		require.NoError(p.t, err, "click %s", sel)
		return nil
	})
}

// ClickRetries is how many times Click tried again because a re-render
// had replaced the node it was about to click.
func (p *Tab) ClickRetries() int { return p.retried }

// Count is the number of nodes matching the CSS selector sel.
func (p *Tab) Count(sel string) int {
	p.t.Helper()
	return Eval[int](p, `document.querySelectorAll(`+JSString(sel)+`).length`)
}

// Text is the text of the first node matching sel, "" when none.
func (p *Tab) Text(sel string) string {
	p.t.Helper()
	return Eval[string](p, `(document.querySelector(`+JSString(sel)+`) || {}).textContent || ""`)
}

// Value is the value of the first form control matching sel, "" when
// none; read in one evaluation, so a re-render cannot detach the node
// between finding and reading it.
func (p *Tab) Value(sel string) string {
	p.t.Helper()
	return Eval[string](p, `(document.querySelector(`+JSString(sel)+`) || {}).value || ""`)
}

// SetValue sets the value of the first form control matching sel (an
// input's text, a select's option) and fires its input and change events,
// as a user's edit does, in one evaluation. It fails the test when no
// control matches or a select has no such option.
func (p *Tab) SetValue(sel, value string) {
	p.t.Helper()
	res := Eval[string](p, `(() => {
  const el = document.querySelector(`+JSString(sel)+`);
  if (!el) return 'no node matches';
  el.value = `+JSString(value)+`;
  if (el.value !== `+JSString(value)+`) return 'the value did not take: ' + el.value;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  el.dispatchEvent(new Event('change', {bubbles: true}));
  return '';
})()`)
	require.Empty(p.t, res, "set the value of %s to %q", sel, value)
}

// WaitFor polls the page until cond (a JavaScript expression) is true,
// within StepTimeout.
func (p *Tab) WaitFor(what, cond string) {
	p.t.Helper()
	check.For(p.t, StepTimeout, 20*time.Millisecond, func() error {
		return check.That(Eval[bool](p, `!!(`+cond+`)`), "%s (%s)", what, cond)
	})
}

// Screenshot saves the whole page as name.png under $DRPLANE_ARTIFACTS
// (the test's temporary directory when unset) and returns the path.
func (p *Tab) Screenshot(name string) string {
	p.t.Helper()
	dir := os.Getenv("DRPLANE_ARTIFACTS")
	if dir == "" {
		dir = p.t.TempDir()
	}
	require.NoError(p.t, os.MkdirAll(dir, 0o755))
	png := Get(p, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	require.NoError(p.t, os.WriteFile(path, png, 0o600))
	p.t.Logf("screenshot %s", path)
	return path
}

// Login opens the dashboard at base (the coordinator's HTTP address) and
// signs in with token, until the topology view shows.
func (p *Tab) Login(base, token string) {
	p.t.Helper()
	p.Do(
		chromedp.Navigate(base+"/ui"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#view .topology")),
	)
}

// JSString quotes s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// Navigate opens url in the tab.
func (p *Tab) Navigate(url string) {
	p.t.Helper()
	p.Do(chromedp.Navigate(url))
}
