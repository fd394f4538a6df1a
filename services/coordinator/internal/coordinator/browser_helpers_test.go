package coordinator_test

import (
	"context"
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

// browserTimeout bounds one browser step (a navigation, a wait for a node).
const browserTimeout = 15 * time.Second

// chromium finds the browser the dashboard tests drive: $DRPLANE_CHROMIUM,
// else Debian's chromium on the PATH (make deps-chromium installs it).
func chromium(t testing.TB) string {
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

// browser is one headless chromium process; each tab is a separate
// browser context (its own memory, so its own session).
type browser struct {
	t    testing.TB
	root context.Context
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
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
	require.NoError(t, chromedp.Do(root), "start %s", chromium(t))
	return &browser{t: t, root: root}
}

// tab opens a new, isolated tab. An uncaught exception of its page or a
// console.error (the page reports content security policy violations so)
// fails the test; other console messages are logged.
func (b *browser) tab() context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	// Open the tab now (without a timeout: the first Do's context is the
	// tab's lifetime), so that later steps are bounded by browserTimeout.
	require.NoError(b.t, chromedp.Do(ctx))
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
			b.t.Errorf("page exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
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
				b.t.Errorf("page console.error: %s", strings.Join(parts, " "))
				continue
			}
			b.t.Logf("console.%s: %s", ev.Type, strings.Join(parts, " "))
		}
	}()
	b.t.Cleanup(func() { cancel(); wg.Wait() })
	return ctx
}

// do runs steps within browserTimeout.
func do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	_ = get(t, ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for _, s := range steps {
			if _, err := s(ctx, tg); err != nil {
				return chromedp.Void{}, err
			}
		}
		return chromedp.Void{}, nil
	})
}

// get runs one action within browserTimeout and returns its value.
func get[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := run(ctx, browserTimeout, a)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("browser step timed out after %s; page text:\n%s", browserTimeout, pageText(ctx))
	}
	require.NoError(t, err)
	return v
}

func run[T any](ctx context.Context, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Run(sctx, a)
}

// pageText is the text of the page, for a failure message.
func pageText(ctx context.Context) string {
	body, _ := run(ctx, time.Second, chromedp.Evaluate[string](`document.body.innerText`))
	return body
}

// nodeGone reports whether err is the browser's answer about a node that
// left the document between chromedp's query and its next call on the node
// (a live update re-rendered the view).
func nodeGone(err error) bool {
	var e *cdproto.Error
	return errors.As(err, &e) && (e.Message == "No node with given id found" ||
		e.Message == "Node is detached from document" || e.Message == "Could not compute content quads.")
}

// click clicks the first node matching the CSS selector sel. chromedp
// queries the node and then clicks its position in separate calls; when a
// live update replaced the node in between (nothing was clicked then), it
// tries again on the node that replaced it, within browserTimeout.
func click(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	check.For(t, browserTimeout, 20*time.Millisecond, func() error {
		_, err := run(ctx, browserTimeout, chromedp.Click(chromedp.CSS(sel)))
		if err != nil && nodeGone(err) {
			return fmt.Errorf("click %s: %w", sel, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("click %s timed out after %s; page text:\n%s", sel, browserTimeout, pageText(ctx))
		}
		require.NoError(t, err, "click %s", sel)
		return nil
	})
}

// screenshot saves the page as name.png under $DRPLANE_ARTIFACTS (the
// test's temporary directory when unset) and returns the path.
func screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	dir := os.Getenv("DRPLANE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png := get(t, ctx, chromedp.FullScreenshot(100))
	p := filepath.Join(dir, name+".png")
	require.NoError(t, os.WriteFile(p, png, 0o600))
	t.Logf("screenshot %s", p)
	return p
}

// login opens the dashboard and signs in with token.
func login(t testing.TB, ctx context.Context, base, token string) {
	t.Helper()
	do(t, ctx,
		chromedp.Navigate(base+"/ui"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#view .topology")),
	)
}

// count is the number of nodes matching a CSS selector.
func count(t testing.TB, ctx context.Context, sel string) int {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
}

// textOf is the text of the first node matching sel, "" when none.
func textOf(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[string](`(document.querySelector(`+jsString(sel)+`) || {}).textContent || ""`))
}

// valueOf is the value of the first form control matching sel, "" when
// none; read in one evaluation, so a re-render cannot detach the node
// between finding and reading it.
func valueOf(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[string](`(document.querySelector(`+jsString(sel)+`) || {}).value || ""`))
}

func jsString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			b = append(b, '\\', byte(r))
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
