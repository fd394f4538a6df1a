package browsertest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/cdproto"
	"github.com/stretchr/testify/assert"
)

// churn replaces its button and its input with new nodes on every
// animation frame, far more often than a live view does on updates. A
// press on any of the buttons counts in #presses, outside the replaced
// part. (It counts presses, not clicks: a button replaced between the
// press and the release gets no click event, for a user as well.)
const churn = `<!doctype html><html><body>
<p id="presses">0</p><div id="live"></div>
<script>
let presses = 0, gen = 0;
document.addEventListener('mousedown', (ev) => {
  if (ev.target.id === 'go') document.getElementById('presses').textContent = String(++presses);
});
function render() {
  gen++;
  const b = document.createElement('button');
  b.id = 'go'; b.textContent = 'Go ' + gen;
  const i = document.createElement('input');
  i.id = 'filter'; i.value = 'kept';
  document.getElementById('live').replaceChildren(b, i);
  requestAnimationFrame(render);
}
render();
</script></body></html>`

// TestClickSurvivesRerender: clicks and reads on a page that replaces its
// nodes all the time land on the live node, each click exactly once.
func TestClickSurvivesRerender(t *testing.T) {
	b := New(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, churn)
	}))
	defer srv.Close()
	tab := b.Tab(t)
	tab.Navigate(srv.URL)
	const n = 20
	for range n {
		tab.Click("#go")
	}
	assert.Equal(t, fmt.Sprint(n), tab.Text("#presses"), "one press per click")
	for range n {
		assert.Equal(t, "kept", tab.Value("#filter"))
	}
	assert.Equal(t, 1, tab.Count("#go"))
	assert.Contains(t, tab.Text("#go"), "Go ")
	assert.Empty(t, tab.Value("#nothing"), "no node: no value")
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
