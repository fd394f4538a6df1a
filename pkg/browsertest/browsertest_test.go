package browsertest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/cdproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rerender is a page whose button the test has replaced at the worst
// moment for a click: right after chromedp's wait saw it visible, before
// the click scrolls to it and presses. The button's offsetWidth, which
// chromedp's visibility check reads (the only reader on this page),
// replaces the button with a new one while re-renders are armed
// (window.arm(k): the next k checks each replace it). A press on a button
// counts in #presses, outside the replaced part, with the button's
// generation in #pressed. (It counts presses, not clicks: a button
// replaced between the press and the release gets no click event, for a
// user as well.) window.churn(true) replaces the button and the input on
// every animation frame instead, for the reads.
const rerender = `<!doctype html><html><body>
<p id="presses">0</p><p id="pressed"></p><p id="replaced">0</p><div id="live"></div>
<script>
let presses = 0, gen = 0, armed = 0, replaced = 0, churning = false;
const width = Object.getOwnPropertyDescriptor(HTMLElement.prototype, 'offsetWidth').get;
window.arm = (k) => { armed = k; };
window.churn = (on) => { churning = on; if (on) requestAnimationFrame(frame); };
document.addEventListener('mousedown', (ev) => {
  if (ev.target.id !== 'go') return;
  document.getElementById('presses').textContent = String(++presses);
  document.getElementById('pressed').textContent = ev.target.dataset.gen;
});
function render() {
  gen++;
  const b = document.createElement('button');
  b.id = 'go'; b.textContent = 'Go ' + gen; b.dataset.gen = String(gen);
  Object.defineProperty(b, 'offsetWidth', {get() {
    const w = width.call(this);
    if (armed > 0 && this.isConnected) {
      armed--;
      document.getElementById('replaced').textContent = String(++replaced);
      render();
    }
    return w;
  }});
  const i = document.createElement('input');
  i.id = 'filter'; i.value = 'kept';
  document.getElementById('live').replaceChildren(b, i);
}
function frame() { if (churning) { render(); requestAnimationFrame(frame); } }
render();
</script></body></html>`

// TestClickSurvivesRerender: a click whose node a re-render replaced
// between chromedp's wait and its press is tried again on the node that
// replaced it, and lands once, there; reads on a page that replaces its
// nodes every frame see the live node. The re-renders are the test's, so
// the retry is taken a known number of times, whatever the machine's load.
func TestClickSurvivesRerender(t *testing.T) {
	b := New(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, rerender)
	}))
	defer srv.Close()
	tab := b.Tab(t)
	tab.Navigate(srv.URL)
	const n = 12
	armed := 0
	for i := range n {
		k := i % 3 // no re-render, one, two in a row
		before := Eval[int](tab, `Number(document.getElementById('go').dataset.gen)`)
		Eval[bool](tab, fmt.Sprintf(`(window.arm(%d), true)`, k))
		tab.Click("#go")
		armed += k
		require.Equal(t, fmt.Sprint(i+1), tab.Text("#presses"), "click %d (%d re-renders): one press", i, k)
		require.Equal(t, fmt.Sprint(before+k), tab.Text("#pressed"), "click %d: pressed the button that replaced the one found (%d re-renders)", i, k)
	}
	require.Equal(t, fmt.Sprint(armed), tab.Text("#replaced"),
		"every armed re-render happened (chromedp's visibility check read offsetWidth)")
	assert.Equal(t, armed, tab.ClickRetries(), "one retry per re-render between the wait and the press")

	Eval[bool](tab, `(window.churn(true), true)`)
	for range n {
		assert.Equal(t, "kept", tab.Value("#filter"))
	}
	assert.Equal(t, 1, tab.Count("#go"))
	assert.Contains(t, tab.Text("#go"), "Go ")
	assert.Empty(t, tab.Value("#nothing"), "no node: no value")
	Eval[bool](tab, `(window.churn(false), true)`)
}

func TestNodeGone(t *testing.T) {
	for _, c := range []struct {
		err  error
		gone bool
	}{
		{&cdproto.Error{Code: -32000, Message: "No node with given id found"}, true},
		{fmt.Errorf("could not retrieve attribute %q: %w", "value", &cdproto.Error{Code: -32000, Message: "No node with given id found"}), true},
		{&cdproto.Error{Code: -32000, Message: "Could not find node with given id"}, true},
		{&cdproto.Error{Code: -32000, Message: "Node is detached from document"}, true},
		{&cdproto.Error{Code: -32000, Message: "Cannot find context with specified id"}, false},
		{errors.New("No node with given id found"), false},
	} {
		assert.Equal(t, c.gone, nodeGone(c.err), "%v", c.err)
	}
}

func TestJSString(t *testing.T) {
	assert.Equal(t, `"a[data-x=\"1\"] \\ b"`, JSString(`a[data-x="1"] \ b`))
	assert.Equal(t, `"line\nbreak"`, JSString("line\nbreak"))
}
