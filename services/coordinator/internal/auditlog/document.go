package auditlog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/docstore"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Field names of an indexed audit event.
const (
	fieldTime   = "time"
	fieldActor  = "actor"
	fieldAction = "action"
)

// Mapping is the audit index's field mapping.
func Mapping() docstore.Mapping {
	return docstore.Mapping{
		"id":               docstore.Keyword,
		fieldTime:          docstore.Date,
		fieldActor:         docstore.Keyword,
		fieldAction:        docstore.Keyword,
		"target":           docstore.Keyword,
		"outcome":          docstore.Keyword,
		"error":            docstore.Text,
		"params":           docstore.Text,
		"rto_ms":           docstore.Long,
		"rpo_transactions": docstore.Long,
		"all":              docstore.Text,
	}
}

// document is an audit event as indexed.
type document struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// Params are "key=value", sorted by key.
	Params          []string `json:"params,omitempty"`
	Outcome         string   `json:"outcome"`
	Error           string   `json:"error,omitempty"`
	RTOMillis       int64    `json:"rto_ms,omitempty"`
	RPOTransactions int64    `json:"rpo_transactions,omitempty"`
	// All holds the words of the other fields for bare-word searches.
	All string `json:"all"`
}

// splitWords replaces the punctuation inside dotted actions, scoped actors,
// paths and parameters with spaces: the text analyser would keep
// "switchover.request" or "token:ops" together as one word.
func splitWords(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ':', '/', '_', '=':
			return ' '
		}
		return r
	}, s)
}

// newDocument converts an event into its indexed form.
func newDocument(e audit.Event) document {
	d := document{
		ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action, Target: e.Target,
		Outcome: e.Outcome, Error: e.Error, RTOMillis: e.RTOMillis, RPOTransactions: e.RPOTransactions,
	}
	keys := make([]string, 0, len(e.Params))
	for k := range e.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.Params = append(d.Params, k+"="+e.Params[k])
	}
	parts := append([]string{e.Actor, e.Action, e.Target}, d.Params...)
	parts = append(parts, e.Error)
	d.All = splitWords(strings.Join(parts, " "))
	return d
}

// op is the bulk operation that (re)writes e.
func op(e audit.Event) (docstore.Op, error) {
	raw, err := json.Marshal(newDocument(e))
	if err != nil {
		return docstore.Op{}, fmt.Errorf("auditlog: encode event %s: %w", e.ID, err)
	}
	return docstore.Op{ID: e.ID, Doc: raw}, nil
}

// apiEvent decodes an indexed document into the API's form.
func apiEvent(raw json.RawMessage) (*drplanev1.AuditEvent, error) {
	var d document
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("auditlog: decode indexed event: %w", err)
	}
	ev := &drplanev1.AuditEvent{
		Id: d.ID, Time: timestamppb.New(d.Time), Actor: d.Actor, Action: d.Action, Target: d.Target,
		Outcome: d.Outcome, Error: d.Error, RtoMs: d.RTOMillis, RpoTransactions: d.RPOTransactions,
	}
	if len(d.Params) > 0 {
		ev.Params = make(map[string]string, len(d.Params))
		for _, p := range d.Params {
			k, v, _ := strings.Cut(p, "=")
			ev.Params[k] = v
		}
	}
	return ev, nil
}
