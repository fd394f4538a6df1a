package ui

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// Event stream timing.
const (
	// Coalesce is how long changes of one topic are gathered into one event:
	// an HA agent rewriting its observations does not flood the page.
	Coalesce = 150 * time.Millisecond
	// Heartbeat is how often an idle stream sends a comment line, so that
	// the page notices a dead connection (it gives up after three missed).
	Heartbeat = 10 * time.Second
)

// Topic names a part of the state the page shows; an event of a topic
// tells the page to fetch that part again through the REST API.
type Topic string

// Topics of the event stream.
const (
	TopicTopology   Topic = "topology"
	TopicStatus     Topic = "status"
	TopicShards     Topic = "shards"
	TopicOperations Topic = "operations"
	TopicFailovers  Topic = "failovers"
	TopicAudit      Topic = "audit"
	TopicRepl       Topic = "replication"
)

// watched maps the etcd key spaces under the store's root to the topic
// their changes belong to. The stream carries topic names and revisions
// only, never values: what the caller may read is decided by the REST call
// that follows.
var watched = []struct {
	key   string
	topic Topic
}{
	{"topology", TopicTopology},
	{"status", TopicStatus},
	{"masters", TopicStatus},
	{"services", TopicStatus},
	{"hamemory", TopicStatus},
	{"dcleases", TopicStatus},
	{"dcviews", TopicStatus},
	{"shardmaps", TopicShards},
	{"operations", TopicOperations},
	{"cityfailovers", TopicOperations},
	{"intents", TopicOperations},
	{"failovers", TopicFailovers},
	{"killswitches", TopicFailovers},
	{"audit-outbox", TopicAudit},
	{"repl", TopicRepl},
	{"watermarks", TopicRepl},
}

// topicOf is the topic of a changed key, "" when the page shows nothing of it.
func (h *Handler) topicOf(key string) Topic {
	for _, w := range watched {
		p := h.o.Store.Key(w.key)
		if key == p || strings.HasPrefix(key, p+"/") {
			return w.topic
		}
	}
	return ""
}

// events streams server-sent events: "hello" with the etcd revision once
// the watch is established, then "change" events whose data is
// {"topic":…,"revision":…}, one per topic per Coalesce at most. The
// stream ends when the client goes away or the server shuts down; the
// page reconnects and fetches everything again.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if h.o.OpenStream != nil {
		release, err := h.o.OpenStream(r)
		if err != nil {
			h.renderError(r.Context(), w, r, err)
			return
		}
		defer release()
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	cli := h.o.Store.Client()
	// The revision to watch from: nothing between it and the page's
	// fetches after "hello" is missed.
	cur, err := cli.Get(ctx, h.o.Store.Key("topology"), clientv3.WithCountOnly())
	if err != nil {
		h.renderError(ctx, w, r, err)
		return
	}
	rev := cur.Header.Revision
	wc := cli.Watch(clientv3.WithRequireLeader(ctx), h.o.Store.Key(""), clientv3.WithPrefix(), clientv3.WithRev(rev+1))

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("X-Accel-Buffering", "no")
	fmt.Fprintf(w, "retry: 1000\nevent: hello\ndata: {\"revision\":%d}\n\n", rev)
	fl.Flush()

	pending := map[Topic]int64{}
	flush := time.NewTicker(Coalesce)
	defer flush.Stop()
	beat := time.NewTicker(Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wc:
			if !ok || resp.Err() != nil {
				// The watch failed (etcd lost, compacted): end the stream so
				// the page reconnects and reloads.
				if resp.Err() != nil {
					h.o.Logger.Warn().Err(resp.Err()).Msg("dashboard event watch ended")
				}
				return
			}
			for _, ev := range resp.Events {
				if t := h.topicOf(string(ev.Kv.Key)); t != "" {
					pending[t] = ev.Kv.ModRevision
				}
			}
		case <-flush.C:
			if len(pending) == 0 {
				continue
			}
			topics := make([]string, 0, len(pending))
			for t := range pending {
				topics = append(topics, string(t))
			}
			sort.Strings(topics)
			for _, t := range topics {
				fmt.Fprintf(w, "event: change\ndata: {\"topic\":%q,\"revision\":%d}\n\n", t, pending[Topic(t)])
			}
			clear(pending)
			fl.Flush()
			beat.Reset(Heartbeat)
		case <-beat.C:
			fmt.Fprint(w, ": ping\n\n")
			fl.Flush()
		}
	}
}
