package apply

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/masterdb"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func intCol(name string, v int64) *drplanev1.Column {
	return &drplanev1.Column{Name: name, Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: v}}}
}

func textCol(name, v string) *drplanev1.Column {
	return &drplanev1.Column{Name: name, Value: &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: v}}}
}

func TestStatements(t *testing.T) {
	ev := &drplanev1.ChangeEvent{Table: "or`ders", Rows: []*drplanev1.RowChange{
		{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{intCol("id", 1)},
			After: []*drplanev1.Column{intCol("id", 1), textCol("note", "a")}},
		{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{intCol("id", 2)},
			Before: []*drplanev1.Column{intCol("id", 2), textCol("note", "b")},
			After:  []*drplanev1.Column{intCol("id", 2), textCol("note", "c")}},
		// An update that moves the row to another key deletes the old key first.
		{Op: drplanev1.RowOp_ROW_OP_UPDATE, Key: []*drplanev1.Column{intCol("id", 4)},
			Before: []*drplanev1.Column{intCol("id", 3), textCol("note", "d")},
			After:  []*drplanev1.Column{intCol("id", 4), textCol("note", "d")}},
		{Op: drplanev1.RowOp_ROW_OP_DELETE, Key: []*drplanev1.Column{intCol("id", 5)}},
		{Op: drplanev1.RowOp_ROW_OP_DELETE, Key: []*drplanev1.Column{intCol("id", 6)}},
	}}
	ops := rowOps(ev, "shop")
	require.Len(t, ops, 6)
	kinds := []opKind{opUpsert, opUpsert, opDelete, opUpsert, opDelete, opDelete}
	for i, op := range ops {
		assert.Equal(t, kinds[i], op.kind, "op %d", i)
		assert.Equal(t, "`shop`.`or``ders`", op.table)
	}
	assert.Equal(t, []any{int64(3)}, ops[2].vals, "the old key")

	q, args := statement(ops[:2])
	assert.Equal(t, "INSERT INTO `shop`.`or``ders` (`id`,`note`) VALUES (?,?),(?,?) ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),`note`=VALUES(`note`)", q)
	assert.Equal(t, []any{int64(1), "a", int64(2), "c"}, args)
	q, args = statement(ops[4:])
	assert.Equal(t, "DELETE FROM `shop`.`or``ders` WHERE `id` IN (?,?)", q)
	assert.Equal(t, []any{int64(5), int64(6)}, args)

	two := rowOp{kind: opDelete, table: "`d`.`t`", cols: []string{"a", "b"}, vals: []any{int64(1), "x"}}
	q, args = statement([]rowOp{two, two})
	assert.Equal(t, "DELETE FROM `d`.`t` WHERE (`a`=? AND `b`=?) OR (`a`=? AND `b`=?)", q)
	assert.Len(t, args, 4)
}

func TestSQLValues(t *testing.T) {
	for _, tc := range []struct {
		v    *drplanev1.Value
		want any
	}{
		{&drplanev1.Value{Kind: &drplanev1.Value_Null{Null: true}}, nil},
		{&drplanev1.Value{Kind: &drplanev1.Value_Int{Int: -7}}, int64(-7)},
		{&drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 1 << 63}}, uint64(1 << 63)},
		{&drplanev1.Value{Kind: &drplanev1.Value_Float{Float: 1.5}}, 1.5},
		{&drplanev1.Value{Kind: &drplanev1.Value_Text{Text: "12.50"}}, "12.50"},
		{&drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte{0, 1}}}, []byte{0, 1}},
		{&drplanev1.Value{Kind: &drplanev1.Value_Raw{}}, []byte{}},
	} {
		got, err := sqlValue(tc.v)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
	_, err := sqlValue(&drplanev1.Value{})
	require.ErrorIs(t, err, errValue)
	_, err = sqlValue(nil)
	require.ErrorIs(t, err, errValue)
}

func TestValidate(t *testing.T) {
	good := func() *drplanev1.ChangeEvent {
		return &drplanev1.ChangeEvent{OriginDc: "dc-a1", RequestId: "0-1-5/3", Gtid: "0-1-5", Keyspace: "orders", Table: "orders",
			Rows: []*drplanev1.RowChange{{Op: drplanev1.RowOp_ROW_OP_INSERT, Key: []*drplanev1.Column{intCol("id", 1)},
				After: []*drplanev1.Column{intCol("id", 1)}}}}
	}
	require.NoError(t, validate(good(), "dc-b1"))
	for name, mod := range map[string]func(*drplanev1.ChangeEvent){
		"no origin":        func(e *drplanev1.ChangeEvent) { e.OriginDc = "" },
		"own DC":           func(e *drplanev1.ChangeEvent) { e.OriginDc = "dc-b1" },
		"no request id":    func(e *drplanev1.ChangeEvent) { e.RequestId = "" },
		"bad keyspace":     func(e *drplanev1.ChangeEvent) { e.Keyspace = "a.b" },
		"no table":         func(e *drplanev1.ChangeEvent) { e.Table = "" },
		"unknown op":       func(e *drplanev1.ChangeEvent) { e.Rows[0].Op = drplanev1.RowOp_ROW_OP_UNSPECIFIED },
		"insert, no after": func(e *drplanev1.ChangeEvent) { e.Rows[0].After = nil },
		"delete, no key": func(e *drplanev1.ChangeEvent) {
			e.Rows[0] = &drplanev1.RowChange{Op: drplanev1.RowOp_ROW_OP_DELETE}
		},
		"value without kind":  func(e *drplanev1.ChangeEvent) { e.Rows[0].After[0].Value = &drplanev1.Value{} },
		"column twice":        func(e *drplanev1.ChangeEvent) { e.Rows[0].After = append(e.Rows[0].After, intCol("id", 2)) },
		"empty column name":   func(e *drplanev1.ChangeEvent) { e.Rows[0].After[0].Name = "" },
		"dedup table":         func(e *drplanev1.ChangeEvent) { e.Table = DedupTable },
		"own table, any case": func(e *drplanev1.ChangeEvent) { e.Table = "DrPlane_Barrier" },
	} {
		ev := good()
		mod(ev)
		assert.ErrorIs(t, validate(ev, "dc-b1"), ErrInvalidEvent, name)
	}
	// A request without rows (nothing of the keyspace changed) is valid.
	ev := good()
	ev.Rows, ev.Table = nil, ""
	require.NoError(t, validate(ev, "dc-b1"))
}

func TestKeyspaceDB(t *testing.T) {
	ks := func(name string) (topology.Keyspace, bool) {
		return topology.Keyspace{Name: "orders", Database: "shop", Table: "orders", Tables: []string{"items"}}, name == "orders"
	}
	db, err := keyspaceDB(&drplanev1.ChangeEvent{Keyspace: "orders"}, ks)
	require.NoError(t, err)
	assert.Equal(t, "shop", db)
	_, err = keyspaceDB(&drplanev1.ChangeEvent{Keyspace: "orders", Schema: "mysql"}, ks)
	require.ErrorIs(t, err, ErrInvalidEvent)
	_, err = keyspaceDB(&drplanev1.ChangeEvent{Keyspace: "nope"}, ks)
	require.ErrorIs(t, err, ErrUnknownKeyspace)
	rows := []*drplanev1.RowChange{{Op: drplanev1.RowOp_ROW_OP_DELETE}}
	for _, table := range []string{"orders", "items"} {
		_, err = keyspaceDB(&drplanev1.ChangeEvent{Keyspace: "orders", Table: table, Rows: rows}, ks)
		require.NoError(t, err, table)
	}
	// Another table of the same database is not the keyspace's.
	_, err = keyspaceDB(&drplanev1.ChangeEvent{Keyspace: "orders", Table: "users", Rows: rows}, ks)
	require.ErrorIs(t, err, ErrInvalidEvent)
	require.ErrorContains(t, err, `table "users" is not a table of keyspace "orders" (orders, items)`)
}

func TestTransient(t *testing.T) {
	my := func(n uint16) error { return fmt.Errorf("exec: %w", &mysql.MySQLError{Number: n}) }
	for _, err := range []error{my(1290), my(1213), my(1205), my(1927), mysql.ErrInvalidConn, masterdb.ErrNoMaster,
		&net.OpError{Op: "dial", Err: errors.New("refused")}, context.DeadlineExceeded, errTransient} {
		assert.True(t, transient(err), "%v", err)
	}
	for _, err := range []error{my(1146), my(1054), my(1048), my(1062), my(1452), my(1366), ErrUndecodable, ErrInvalidEvent,
		ErrUnknownKeyspace} {
		assert.False(t, transient(err), "%v", err)
	}
	assert.True(t, hopeless(fmt.Errorf("x: %w", ErrUndecodable)))
	assert.False(t, hopeless(ErrUnknownKeyspace), "the topology may catch up")
}

func TestGTIDOrder(t *testing.T) {
	assert.True(t, gtidAtOrAfter("0-1-10", "0-1-9"))
	assert.True(t, gtidAtOrAfter("0-2-10", "0-1-10"), "a promoted master continues the domain's sequence")
	assert.False(t, gtidAtOrAfter("0-1-9", "0-2-10"))
	assert.True(t, gtidAtOrAfter("1-1-1", "0-1-10"), "other domains do not order")
	assert.True(t, gtidAtOrAfter("junk", "0-1-10"))
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, percentile(d, 0.5))
	assert.Equal(t, 99*time.Millisecond, percentile(d, 0.99))
	assert.Equal(t, 7*time.Millisecond, percentile([]time.Duration{7 * time.Millisecond}, 0.99))
}

// fakeMsg is a delivered message with a stream sequence.
type fakeMsg struct {
	seq   uint64
	acked bool
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: 1}, nil
}
func (m *fakeMsg) Data() []byte                     { return nil }
func (m *fakeMsg) Headers() nats.Header             { return nats.Header{} }
func (m *fakeMsg) Subject() string                  { return "drplane.out.dc-a1.orders.0" }
func (m *fakeMsg) Reply() string                    { return "" }
func (m *fakeMsg) Ack() error                       { m.acked = true; return nil }
func (m *fakeMsg) DoubleAck(context.Context) error  { return m.Ack() }
func (m *fakeMsg) Nak() error                       { return nil }
func (m *fakeMsg) NakWithDelay(time.Duration) error { return nil }
func (m *fakeMsg) InProgress() error                { return nil }
func (m *fakeMsg) Term() error                      { return nil }
func (m *fakeMsg) TermWithReason(string) error      { return nil }
func msgs(seqs ...uint64) []jetstream.Msg {
	out := make([]jetstream.Msg, len(seqs))
	for i, s := range seqs {
		out[i] = &fakeMsg{seq: s}
	}
	return out
}

func seqsOf(ms []jetstream.Msg) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.(*fakeMsg).seq)
	}
	return out
}

func TestSequencer(t *testing.T) {
	s := &sequencer{next: 5, log: zerolog.Nop()}
	// In order; an old redelivery is stale.
	keep, stale, gap := s.filter(msgs(3, 5, 6, 7))
	assert.Equal(t, []uint64{5, 6, 7}, seqsOf(keep))
	assert.Equal(t, []uint64{3}, seqsOf(stale))
	assert.False(t, gap)
	assert.EqualValues(t, 8, s.next)

	// 8 and 9 were lost in transit: the batch is cut before 10.
	keep, _, gap = s.filter(msgs(10, 11))
	assert.Empty(t, keep)
	assert.True(t, gap)
	assert.EqualValues(t, 8, s.next)
	// The reset redelivers them first.
	keep, _, gap = s.filter(msgs(8, 9, 10, 11))
	assert.Equal(t, []uint64{8, 9, 10, 11}, seqsOf(keep))
	assert.False(t, gap)

	// 12-19 were deleted from the stream: every reset delivers 20 first;
	// after gapConfirmations resets the gap is accepted.
	for range gapConfirmations - 1 {
		keep, _, gap = s.filter(msgs(20, 21))
		assert.Empty(t, keep)
		assert.True(t, gap)
	}
	keep, _, gap = s.filter(msgs(20, 21))
	assert.Equal(t, []uint64{20, 21}, seqsOf(keep))
	assert.False(t, gap)
	assert.EqualValues(t, 22, s.next)
}

// TestSequencerKeepsStoredGap: a gap that every reset delivers the same way
// is not skipped while the stream still holds its first message (its
// deliveries went to a pull request nobody reads any more).
func TestSequencerKeepsStoredGap(t *testing.T) {
	held := true
	s := &sequencer{next: 5, log: zerolog.Nop(), stored: func(seq uint64) (bool, error) {
		assert.EqualValues(t, 5, seq)
		return held, nil
	}}
	for range 3 * gapConfirmations {
		keep, _, gap := s.filter(msgs(7, 8))
		assert.Empty(t, keep)
		assert.True(t, gap)
		assert.EqualValues(t, 5, s.next)
	}
	// Once the stream no longer holds it, the gap is accepted.
	held = false
	for range gapConfirmations - 1 {
		_, _, gap := s.filter(msgs(7, 8))
		assert.True(t, gap)
	}
	keep, _, gap := s.filter(msgs(7, 8))
	assert.Equal(t, []uint64{7, 8}, seqsOf(keep))
	assert.False(t, gap)
}

func TestLedgerSuffixes(t *testing.T) {
	for k, want := range map[drplanev1.LedgerUpdate_Kind]string{
		drplanev1.LedgerUpdate_KIND_APPLIED: "applied", drplanev1.LedgerUpdate_KIND_DEAD_LETTERED: "dead_lettered",
		drplanev1.LedgerUpdate_KIND_CAPTURED: "captured", drplanev1.LedgerUpdate_KIND_RETRIED: "retried",
	} {
		assert.Equal(t, want, ledgerSuffix(k))
	}
}

func TestDecodeOrigin(t *testing.T) {
	// An undecodable message still names its origin and request, from its
	// Nats-Msg-Id or subject, for the dead-letter headers.
	m := &hdrMsg{fakeMsg: fakeMsg{seq: 9}, h: nats.Header{jetstream.MsgIDHeader: []string{"dc-a2:0-1-1/2"}}}
	m.data = []byte{0xff}
	it := decode(m, "dc-b1")
	require.ErrorIs(t, it.bad, ErrUndecodable)
	assert.Equal(t, "dc-a2", it.origin())
	assert.Equal(t, "0-1-1/2", it.requestID())
	assert.EqualValues(t, 9, it.streamSeq())

	it = decode(&hdrMsg{fakeMsg: fakeMsg{seq: 1}, h: nats.Header{}, data: []byte{0xff}}, "dc-b1")
	assert.Equal(t, "dc-a1", it.origin(), "from the subject")

	ev := &drplanev1.ChangeEvent{OriginDc: "dc-a1", RequestId: "r", Keyspace: "orders"}
	data, err := proto.Marshal(ev)
	require.NoError(t, err)
	it = decode(&hdrMsg{fakeMsg: fakeMsg{seq: 2}, h: nats.Header{}, data: data}, "dc-b1")
	require.NoError(t, it.bad)
	assert.Equal(t, "dc-a1:r", it.key())
}

type hdrMsg struct {
	fakeMsg
	h    nats.Header
	data []byte
}

func (m *hdrMsg) Headers() nats.Header { return m.h }
func (m *hdrMsg) Data() []byte         { return m.data }

func TestRowGuardOrder(t *testing.T) {
	at := func(origin, g string) position { return positionOf(&drplanev1.ChangeEvent{OriginDc: origin, Gtid: g}) }
	assert.True(t, at("a", "0-1-5").before(at("a", "0-2-6")), "same origin and domain: by sequence, whatever the server")
	assert.False(t, at("a", "0-1-6").before(at("a", "0-1-6")))
	assert.False(t, at("a", "0-1-7").before(at("a", "0-1-6")))
	assert.False(t, at("a", "0-1-5").before(at("b", "0-1-6")), "other origins are not ordered")
	assert.False(t, at("a", "0-1-5").before(at("a", "1-1-6")), "nor other domains")
	assert.False(t, at("a", "garbage").before(at("a", "0-1-6")), "an unparsable GTID is never older")

	id := func(v int64) []*drplanev1.Column {
		return []*drplanev1.Column{{Name: "id", Value: &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: v}}}}
	}
	assert.Less(t, string(rowKey("t", id(-5))), string(rowKey("t", id(3))), "integer keys keep their order")
	assert.Less(t, string(rowKey("t", id(3))), string(rowKey("t", id(300))))
	assert.NotEqual(t, rowKey("t", id(3)), rowKey("u", id(3)), "tables apart")
	long := []*drplanev1.Column{{Name: "k", Value: &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: strings.Repeat("x", 400)}}}}
	k := rowKey("t", long)
	assert.Len(t, k, 33, "a long key by its hash")
	assert.Equal(t, byte(0xFF), k[0])
	assert.Nil(t, rowKey("t", nil))
}
