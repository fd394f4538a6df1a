package ledger

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/docstore"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// States of a request (Document.State).
const (
	StatePending      = "PENDING"
	StateApplied      = "APPLIED"
	StateDeadLettered = "DEAD_LETTERED"
)

// Field names the queries use.
const (
	fieldOrigin        = "origin_dc"
	fieldState         = "state"
	fieldTargets       = "targets"
	fieldCapturedAt    = "captured_at"
	fieldPendingDCs    = "pending_dcs"
	fieldAttempts      = "attempts"
	fieldLastAttemptAt = "last_attempt_at"
)

// Mapping is the ledger index's field mapping. The per-DC objects
// (applied_at, dead_lettered, retries) are kept in the documents but not
// mapped: their keys are DC names.
func Mapping() docstore.Mapping {
	return docstore.Mapping{
		"id":                docstore.Keyword,
		fieldOrigin:         docstore.Keyword,
		"request_id":        docstore.Keyword,
		"gtid":              docstore.Keyword,
		"keyspace":          docstore.Keyword,
		"shard":             docstore.Long,
		fieldCapturedAt:     docstore.Date,
		fieldTargets:        docstore.Keyword,
		"outbound_seq":      docstore.Long,
		fieldState:          docstore.Keyword,
		"applied_dcs":       docstore.Keyword,
		"dead_lettered_dcs": docstore.Keyword,
		fieldPendingDCs:     docstore.Keyword,
		fieldAttempts:       docstore.Long,
		"last_retry_at":     docstore.Date,
		fieldLastAttemptAt:  docstore.Date,
		"updated_at":        docstore.Date,
		"error":             docstore.Text,
	}
}

// DocID is the ledger document id of a request: "<origin>:<request-id>".
func DocID(origin, requestID string) string { return origin + ":" + requestID }

// Document is one request's ledger record. The fact fields hold what the
// facts said and are combined so that the result does not depend on the
// order the facts arrive in; the derived fields are recomputed from them
// (derive) before every write.
type Document struct {
	ID        string `json:"id"`
	OriginDC  string `json:"origin_dc"`
	RequestID string `json:"request_id"`
	GTID      string `json:"gtid,omitempty"`
	Keyspace  string `json:"keyspace,omitempty"`
	Shard     int32  `json:"shard"`

	// Fact fields. CapturedAt is the earliest capture reported, Targets the
	// union of the targets, OutboundSeq the lowest sequence (any copy can be
	// republished).
	CapturedAt  time.Time `json:"captured_at,omitzero"`
	Targets     []string  `json:"targets,omitempty"`
	OutboundSeq uint64    `json:"outbound_seq,omitempty"`
	// AppliedAt is the earliest apply per DC.
	AppliedAt map[string]time.Time `json:"applied_at,omitempty"`
	// DeadLettered is the latest dead letter per DC.
	DeadLettered map[string]DeadLetter `json:"dead_lettered,omitempty"`
	// Retries are the retries by "<dc>@<unix-nanos>": the reconciler's
	// (dc: the origin) and the operators' dead-letter retries (dc: the DC
	// whose dead letter was put back).
	Retries map[string]Retry `json:"retries,omitempty"`

	// Derived fields.
	State string `json:"state"`
	// AppliedDCs, DeadLetteredDCs and PendingDCs sort the DCs: applied;
	// dead-lettered and not applied nor retried since; targets in neither
	// (empty while the capture is not known).
	AppliedDCs      []string  `json:"applied_dcs"`
	DeadLetteredDCs []string  `json:"dead_lettered_dcs"`
	PendingDCs      []string  `json:"pending_dcs"`
	Attempts        int       `json:"attempts"`
	LastRetryAt     time.Time `json:"last_retry_at,omitzero"`
	// LastAttemptAt is the later of CapturedAt and LastRetryAt: when the
	// request was last sent.
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	// Error holds the errors of the current dead letters, "<dc>: <error>".
	Error     string    `json:"error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DeadLetter is one DC's dead-letter fact.
type DeadLetter struct {
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// Retry is one retry fact.
type Retry struct {
	DC string    `json:"dc"`
	At time.Time `json:"at"`
}

// RetryKey is the key of a retry in Document.Retries.
func RetryKey(dc string, at time.Time) string { return dc + "@" + strconv.FormatInt(at.UnixNano(), 10) }

// newDocument returns the empty document of a request.
func newDocument(origin, requestID string) *Document {
	return &Document{ID: DocID(origin, requestID), OriginDC: origin, RequestID: requestID}
}

// decodeDocument reads a stored document.
func decodeDocument(raw json.RawMessage) (*Document, error) {
	var d Document
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("ledger: decode document: %w", err)
	}
	return &d, nil
}

// apply folds one fact into d; at is the fact's time (its own, else when
// it was stored). Facts of unknown kinds change nothing.
func (d *Document) apply(u *drplanev1.LedgerUpdate, at time.Time) {
	at = at.UTC()
	captured := u.GetKind() == drplanev1.LedgerUpdate_KIND_CAPTURED
	if u.GetKeyspace() != "" && (captured || d.Keyspace == "") {
		d.Keyspace, d.Shard = u.GetKeyspace(), u.GetShard()
	}
	if u.GetGtid() != "" && (captured || d.GTID == "") {
		d.GTID = u.GetGtid()
	}
	switch u.GetKind() {
	case drplanev1.LedgerUpdate_KIND_CAPTURED:
		if d.CapturedAt.IsZero() || at.Before(d.CapturedAt) {
			d.CapturedAt = at
		}
		for _, t := range u.GetTargets() {
			if t != "" && !slices.Contains(d.Targets, t) {
				d.Targets = append(d.Targets, t)
			}
		}
		slices.Sort(d.Targets)
		if s := u.GetOutboundSeq(); s > 0 && (d.OutboundSeq == 0 || s < d.OutboundSeq) {
			d.OutboundSeq = s
		}
	case drplanev1.LedgerUpdate_KIND_APPLIED:
		if d.AppliedAt == nil {
			d.AppliedAt = map[string]time.Time{}
		}
		if cur, ok := d.AppliedAt[u.GetDc()]; !ok || at.Before(cur) {
			d.AppliedAt[u.GetDc()] = at
		}
	case drplanev1.LedgerUpdate_KIND_DEAD_LETTERED:
		if d.DeadLettered == nil {
			d.DeadLettered = map[string]DeadLetter{}
		}
		cur, ok := d.DeadLettered[u.GetDc()]
		if !ok || at.After(cur.At) || (at.Equal(cur.At) && u.GetError() > cur.Error) {
			d.DeadLettered[u.GetDc()] = DeadLetter{At: at, Error: u.GetError()}
		}
	case drplanev1.LedgerUpdate_KIND_RETRIED:
		if d.Retries == nil {
			d.Retries = map[string]Retry{}
		}
		d.Retries[RetryKey(u.GetDc(), at)] = Retry{DC: u.GetDc(), At: at}
	}
}

// captured reports whether the capture, and so the targets, are known.
func (d *Document) captured() bool { return !d.CapturedAt.IsZero() && len(d.Targets) > 0 }

// derive recomputes the derived fields from the fact fields.
func (d *Document) derive(now time.Time) {
	lastRetryFor := map[string]time.Time{}
	d.LastRetryAt = time.Time{}
	for _, r := range d.Retries {
		if r.At.After(lastRetryFor[r.DC]) {
			lastRetryFor[r.DC] = r.At
		}
		if r.At.After(d.LastRetryAt) {
			d.LastRetryAt = r.At
		}
	}
	d.Attempts = len(d.Retries)
	d.AppliedDCs = slices.Sorted(maps.Keys(d.AppliedAt))
	d.DeadLetteredDCs = []string{}
	var errs []string
	for _, dc := range slices.Sorted(maps.Keys(d.DeadLettered)) {
		dl := d.DeadLettered[dc]
		// A dead letter counts until the DC applies the request or an
		// operator puts it back (a retry for that DC after it).
		if _, applied := d.AppliedAt[dc]; applied || !dl.At.After(lastRetryFor[dc]) {
			continue
		}
		d.DeadLetteredDCs = append(d.DeadLetteredDCs, dc)
		errs = append(errs, dc+": "+dl.Error)
	}
	d.Error = strings.Join(errs, "; ")
	d.PendingDCs = []string{}
	allApplied := d.captured()
	if d.captured() {
		for _, t := range d.Targets {
			_, applied := d.AppliedAt[t]
			if !applied {
				allApplied = false
			}
			if !applied && !slices.Contains(d.DeadLetteredDCs, t) {
				d.PendingDCs = append(d.PendingDCs, t)
			}
		}
	}
	switch {
	case allApplied:
		d.State = StateApplied
	case len(d.DeadLetteredDCs) > 0:
		d.State = StateDeadLettered
	default:
		d.State = StatePending
	}
	d.LastAttemptAt = time.Time{}
	if d.captured() {
		d.LastAttemptAt = d.CapturedAt
		if d.LastRetryAt.After(d.LastAttemptAt) {
			d.LastAttemptAt = d.LastRetryAt
		}
	}
	d.UpdatedAt = now.UTC()
}

// op is the write of d: a merge, so that per-DC facts another writer of
// the same index added meanwhile are kept.
func (d *Document) op() (docstore.Op, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return docstore.Op{}, fmt.Errorf("ledger: encode %s: %w", d.ID, err)
	}
	return docstore.Op{ID: d.ID, Doc: raw, Merge: true}, nil
}

// Record converts d into the API's form.
func (d *Document) Record() *drplanev1.LedgerRecord {
	r := &drplanev1.LedgerRecord{
		OriginDc: d.OriginDC, RequestId: d.RequestID, Gtid: d.GTID, Keyspace: d.Keyspace, Shard: d.Shard,
		CapturedAt: ts(d.CapturedAt), Targets: d.Targets, OutboundSeq: d.OutboundSeq, State: apiState(d.State),
		Attempts: int32(min(d.Attempts, 1<<31-1)), LastRetryAt: ts(d.LastRetryAt), UpdatedAt: ts(d.UpdatedAt), //nolint:gosec // bounded above
	}
	dcs := slices.Clone(d.Targets)
	for dc := range d.AppliedAt {
		dcs = append(dcs, dc)
	}
	for dc := range d.DeadLettered {
		dcs = append(dcs, dc)
	}
	slices.Sort(dcs)
	for _, dc := range slices.Compact(dcs) {
		t := &drplanev1.LedgerTarget{Dc: dc}
		if at, ok := d.AppliedAt[dc]; ok {
			t.AppliedAt = ts(at)
		}
		if dl, ok := d.DeadLettered[dc]; ok {
			t.DeadLetteredAt, t.Error = ts(dl.At), dl.Error
		}
		r.TargetStatus = append(r.TargetStatus, t)
	}
	return r
}

func apiState(s string) drplanev1.RequestState {
	switch s {
	case StatePending:
		return drplanev1.RequestState_REQUEST_STATE_PENDING
	case StateApplied:
		return drplanev1.RequestState_REQUEST_STATE_APPLIED
	case StateDeadLettered:
		return drplanev1.RequestState_REQUEST_STATE_DEAD_LETTERED
	}
	return drplanev1.RequestState_REQUEST_STATE_UNSPECIFIED
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
