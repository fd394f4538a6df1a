package apply

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Sentinel errors. ErrUndecodable and ErrInvalidEvent make a message poison
// at once; the others are non-transient apply errors, retried before the
// request is dead-lettered.
var (
	ErrUndecodable     = errors.New("apply: undecodable payload")
	ErrInvalidEvent    = errors.New("apply: invalid event")
	ErrUnknownKeyspace = errors.New("apply: unknown keyspace")
	ErrOptions         = errors.New("apply: invalid options")
)

// Header names the collector sets on the messages it publishes (see
// package embednats, where the coordinator reads them too).
const (
	HeaderError     = embednats.HeaderError
	HeaderOrigin    = embednats.HeaderOrigin
	HeaderRequestID = embednats.HeaderRequestID
	HeaderSubject   = embednats.HeaderSubject
	HeaderStream    = embednats.HeaderStream
	HeaderSequence  = embednats.HeaderSequence
	// HeaderDuplicate marks a copy made by the duplicate-delivery test hook.
	HeaderDuplicate = embednats.HeaderDuplicate
)

// item is one consumed message and what became of it.
type item struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	ev   *drplanev1.ChangeEvent
	// bad is set when the message cannot be applied whatever happens.
	bad error
	// skip: another message of the same batch carries the same request.
	skip bool
	// done: applied now (fresh) or found applied before (!fresh).
	done, fresh bool
	// poison holds the error that dead-letters the message.
	poison error
	// attempts counts the non-transient failures of the request applied alone.
	attempts int
	// stale counts the row changes the ordering guard skipped: rows that
	// newer changes of the same origin had reached first.
	stale int
	// diverged: refused as divergence, not applied; unacked: not acked
	// either (the divergence could not be recorded yet).
	diverged, unacked bool
}

// decode reads a message into an item; an item whose payload is not a
// valid ChangeEvent has bad set.
func decode(msg jetstream.Msg, self string) *item {
	it := &item{msg: msg}
	if meta, err := msg.Metadata(); err == nil {
		it.meta = meta
	}
	ev := &drplanev1.ChangeEvent{}
	if err := proto.Unmarshal(msg.Data(), ev); err != nil {
		it.bad = fmt.Errorf("%w: %w", ErrUndecodable, err)
		return it
	}
	if err := validate(ev, self); err != nil {
		it.bad = err
		return it
	}
	it.ev = ev
	return it
}

// key identifies the request for deduplication.
func (it *item) key() string { return it.ev.GetOriginDc() + ":" + it.ev.GetRequestId() }

// origin names the DC the message came from, also for an undecodable one:
// from the event, else from its Nats-Msg-Id or subject.
func (it *item) origin() string {
	if it.ev != nil {
		return it.ev.GetOriginDc()
	}
	if id := it.msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		if o, _, ok := strings.Cut(id, ":"); ok && topology.ValidName(o) {
			return o
		}
	}
	// drplane.out.<origin>.<keyspace>.<shard>
	if parts := strings.Split(it.msg.Subject(), "."); len(parts) > 2 && parts[1] == "out" && topology.ValidName(parts[2]) {
		return parts[2]
	}
	return "unknown"
}

// requestID is the event's request id, or for an undecodable message what
// its Nats-Msg-Id says.
func (it *item) requestID() string {
	if it.ev != nil {
		return it.ev.GetRequestId()
	}
	if _, rid, ok := strings.Cut(it.msg.Headers().Get(jetstream.MsgIDHeader), ":"); ok {
		return rid
	}
	return ""
}

// streamSeq is the message's sequence in the inbound stream (0 if unknown).
func (it *item) streamSeq() uint64 {
	if it.meta == nil {
		return 0
	}
	return it.meta.Sequence.Stream
}

// commitTime is when the origin committed the request (zero if unknown).
func (it *item) commitTime() time.Time {
	if ts := it.ev.GetCommitTime(); ts != nil {
		return ts.AsTime()
	}
	return time.Time{}
}

// validate checks what apply relies on: names, request id, row images
// with values.
func validate(ev *drplanev1.ChangeEvent, self string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: request %q from %q: %s", ErrInvalidEvent, ev.GetRequestId(), ev.GetOriginDc(), fmt.Sprintf(format, args...))
	}
	switch {
	case !topology.ValidName(ev.GetOriginDc()):
		return bad("origin DC %q is not a valid name", ev.GetOriginDc())
	case ev.GetOriginDc() == self:
		return bad("the event comes from this DC")
	case ev.GetRequestId() == "" || len(ev.GetRequestId()) > 191:
		return bad("request id must have 1-191 characters")
	case len(ev.GetGtid()) > 64:
		return bad("gtid longer than 64 characters")
	case !topology.ValidName(ev.GetKeyspace()):
		return bad("keyspace %q is not a valid name", ev.GetKeyspace())
	case ev.GetBarrier() != "" && len(ev.GetRows()) > 0:
		return bad("a barrier carries no rows")
	case len(ev.GetRows()) > 0 && !validIdent(ev.GetTable()):
		return bad("table %q is not a usable name", ev.GetTable())
	case len(ev.GetRows()) > 0 && ownTable(ev.GetTable()):
		return bad("table %q is one of drplane's own (%s*), never written by a request", ev.GetTable(), ownTablePrefix)
	case ev.GetSchema() != "" && !validIdent(ev.GetSchema()):
		return bad("schema %q is not a usable name", ev.GetSchema())
	}
	for i, rc := range ev.GetRows() {
		if err := validateRow(rc); err != nil {
			return bad("row %d: %v", i, err)
		}
	}
	return nil
}

// errRow is the message of a malformed row; validate wraps it.
var errRow = errors.New("malformed row")

func validateRow(rc *drplanev1.RowChange) error {
	switch rc.GetOp() {
	case drplanev1.RowOp_ROW_OP_INSERT, drplanev1.RowOp_ROW_OP_UPDATE:
		if len(rc.GetAfter()) == 0 {
			return fmt.Errorf("%w: %s without an after image", errRow, rc.GetOp())
		}
	case drplanev1.RowOp_ROW_OP_DELETE:
		if len(rc.GetKey()) == 0 {
			return fmt.Errorf("%w: delete without a primary key", errRow)
		}
	default:
		return fmt.Errorf("%w: unknown operation %d", errRow, rc.GetOp())
	}
	for _, set := range [][]*drplanev1.Column{rc.GetKey(), rc.GetBefore(), rc.GetAfter()} {
		seen := make(map[string]bool, len(set))
		for _, c := range set {
			if !validIdent(c.GetName()) {
				return fmt.Errorf("%w: column name %q", errRow, c.GetName())
			}
			if seen[c.GetName()] {
				return fmt.Errorf("%w: column %q twice in one image", errRow, c.GetName())
			}
			seen[c.GetName()] = true
			if _, err := sqlValue(c.GetValue()); err != nil {
				return fmt.Errorf("column %q: %w", c.GetName(), err)
			}
		}
	}
	return nil
}

// ownTablePrefix starts the names of drplane's tables in a keyspace's
// database (the dedup rows, barriers). A request that names one is
// dead-lettered: a message on the inbound subjects could otherwise mark
// requests as applied or forge a barrier.
const ownTablePrefix = "drplane_"

// ownTable reports whether table is one of drplane's, in any letter case
// (table names are case-insensitive with lower_case_table_names).
func ownTable(table string) bool {
	return len(table) >= len(ownTablePrefix) && strings.EqualFold(table[:len(ownTablePrefix)], ownTablePrefix)
}

// validIdent reports whether s can be used as a MySQL identifier (quoted).
func validIdent(s string) bool {
	return s != "" && len(s) <= 64 && !strings.ContainsRune(s, 0) && strings.TrimRight(s, " ") == s
}

// errValue is the message of a value without a kind.
var errValue = errors.New("value has no kind")

// sqlValue converts a value to a database/sql argument.
func sqlValue(v *drplanev1.Value) (any, error) {
	switch k := v.GetKind().(type) {
	case *drplanev1.Value_Null:
		return nil, nil
	case *drplanev1.Value_Int:
		return k.Int, nil
	case *drplanev1.Value_Uint:
		return k.Uint, nil
	case *drplanev1.Value_Float:
		return k.Float, nil
	case *drplanev1.Value_Text:
		return k.Text, nil
	case *drplanev1.Value_Raw:
		if k.Raw == nil {
			return []byte{}, nil
		}
		return k.Raw, nil
	}
	return nil, errValue
}

// keyspaceDB returns the database of ev's keyspace, checking that the
// event's schema (when given) is that database and its table one of the
// keyspace's.
func keyspaceDB(ev *drplanev1.ChangeEvent, ks func(string) (topology.Keyspace, bool)) (string, error) {
	k, ok := ks(ev.GetKeyspace())
	if !ok {
		return "", fmt.Errorf("%w: %q (request %s from %s)", ErrUnknownKeyspace, ev.GetKeyspace(), ev.GetRequestId(), ev.GetOriginDc())
	}
	if s := ev.GetSchema(); s != "" && s != k.Database {
		return "", fmt.Errorf("%w: schema %q is not the database %q of keyspace %q", ErrInvalidEvent, s, k.Database, k.Name)
	}
	// Only the keyspace's tables: an inbound message may not write any
	// other table of its database.
	if len(ev.GetRows()) > 0 && !k.HasTable(ev.GetTable()) {
		return "", fmt.Errorf("%w: table %q is not a table of keyspace %q (%s)", ErrInvalidEvent, ev.GetTable(), k.Name, strings.Join(k.AllTables(), ", "))
	}
	return k.Database, nil
}
