package auditlog

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
)

const waitFor = 15 * time.Second

// openStore opens an embedded store in dir and closes it when the test ends
// (closing twice is harmless).
func openStore(t *testing.T, dir string) docstore.Store {
	t.Helper()
	s, err := embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newEtcd starts a one-member etcd and returns a state store on it.
func newEtcd(t *testing.T) *state.Store {
	t.Helper()
	return state.New(harness.EtcdClient(t), "")
}

// running is an indexer started by startIndexer.
type running struct {
	ix   *Indexer
	reg  *prometheus.Registry
	stop func()
}

// startIndexer runs an indexer until stop or the end of the test, and waits
// until it is ready.
func startIndexer(t *testing.T, o Options) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.MinBackoff == 0 {
		o.MinBackoff = 20 * time.Millisecond
	}
	o.Logger = zerolog.Nop()
	ix, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Run returns nil when its context ends")
		case <-time.After(waitFor):
			t.Error("indexer did not stop")
		}
	}
	t.Cleanup(stop)
	select {
	case <-ix.Ready():
	case err := <-done:
		t.Fatalf("indexer ended before it was ready: %v", err)
	case <-time.After(waitFor):
		t.Fatal("indexer never became ready")
	}
	return &running{ix: ix, reg: reg, stop: stop}
}

// event returns a valid event at t from source.
func event(at time.Time, source string, seq uint64, action, target string) audit.Event {
	return audit.Event{
		ID: audit.NewID(at, source, seq), Time: at.UTC(), Actor: "token:" + source, Action: action, Target: target,
		Params: map[string]string{"seq": fmt.Sprint(seq)}, Outcome: audit.OutcomeOK,
	}
}

// searchIDs searches the audit index and returns the hit ids (all pages).
func searchIDs(t *testing.T, s docstore.Store, q docstore.Query) []string {
	t.Helper()
	out := []string{}
	q.Size = docstore.MaxSize
	for {
		res, err := s.Search(t.Context(), DefaultIndex, q)
		require.NoError(t, err)
		for _, h := range res.Hits {
			out = append(out, h.ID)
		}
		if res.Next == "" {
			return out
		}
		q.After = res.Next
	}
}

// waitIndexed waits until the audit index of s holds exactly want (ids).
func waitIndexed(t *testing.T, s docstore.Store, want ...string) {
	t.Helper()
	var got []string
	check.For(t, waitFor, 20*time.Millisecond, func() error {
		got = searchIDs(t, s, docstore.Query{})
		return check.That(assert.ObjectsAreEqual(sorted(want), got), "indexed %v, want %v", got, want)
	})
}

func sorted(ids []string) []string {
	out := append([]string{}, ids...)
	slices.Sort(out)
	return out
}
