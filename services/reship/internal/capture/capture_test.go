package capture

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const typesDDL = `CREATE TABLE types (
  id BIGINT UNSIGNED PRIMARY KEY,
  i INT NOT NULL,
  price DECIMAL(10,2),
  d DATE,
  dt DATETIME(3),
  ts TIMESTAMP(6) NULL,
  status ENUM('new','paid','shipped'),
  tags SET('red','green','blue'),
  name VARCHAR(20),
  body TEXT,
  bin VARBINARY(8),
  doc JSON,
  f FLOAT,
  flags BIT(8)
)`

// streamUntil streams from "" and returns the first transaction that
// satisfies done.
func streamUntil(t *testing.T, c *Capturer, addr string, done func(*Txn) bool) (*Txn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got *Txn
	errFound := errors.New("found")
	err := c.Stream(ctx, addr, "", func(txn *Txn) error {
		if done(txn) {
			got = txn
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return got, nil
	}
	return nil, err
}

func TestStreamTypesAndMetadata(t *testing.T) {
	// A lone master: a short semi-sync timeout, or its commits wait for a
	// replica that never comes.
	db := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 1, SemiSyncTimeout: 50 * time.Millisecond, Schema: []string{typesDDL}})
	admin := db.AdminDB(db.Master)
	_, err := admin.Exec("SET GLOBAL rpl_semi_sync_master_enabled = 0")
	require.NoError(t, err)
	app := db.AppDB(db.Master)
	conn, err := app.Conn(context.Background())
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	_, err = conn.ExecContext(context.Background(), "SET time_zone = '+02:00'")
	require.NoError(t, err)
	_, err = conn.ExecContext(context.Background(), `INSERT INTO types VALUES (18446744073709551615, -5, 12.50, '2024-02-29',
		'2024-02-29 13:14:15.123', '2024-02-29 13:14:15.654321', 'paid', 'red,blue', 'héllo', 'long text', x'00ff01', '{"a": 1}', 0.1, b'10000001')`)
	require.NoError(t, err)

	c := New(Options{
		ServerID: 4000, User: db.Users.ReplUser, Password: db.Users.ReplPassword,
		Filter: func(schema, table string) bool { return schema == db.Database && table == "types" },
		Logger: zerolog.Nop(),
	})
	pos, err := c.CurrentPosition(context.Background(), db.Master.Addr())
	require.NoError(t, err)
	require.Regexp(t, `^0-1-\d+$`, pos)

	txn, err := streamUntil(t, c, db.Master.Addr(), func(txn *Txn) bool { return len(txn.Rows) > 0 })
	require.NoError(t, err)
	require.Equal(t, pos, txn.Position, "the insert is the last transaction")
	require.Len(t, txn.Rows, 1)
	r := txn.Rows[0]
	require.Equal(t, drplanev1.RowOp_ROW_OP_INSERT, r.Op)
	require.Equal(t, "types", r.Table)
	got := map[string]*drplanev1.Value{}
	for _, col := range r.After {
		got[col.Name] = col.Value
	}
	require.Equal(t, uint64(18446744073709551615), got["id"].GetUint())
	require.Equal(t, int64(-5), got["i"].GetInt())
	require.Equal(t, "12.50", got["price"].GetText())
	require.Equal(t, "2024-02-29", got["d"].GetText())
	require.Equal(t, "2024-02-29 13:14:15.123", got["dt"].GetText())
	require.Equal(t, "2024-02-29 11:14:15.654321", got["ts"].GetText(), "TIMESTAMP travels in UTC")
	require.Equal(t, "paid", got["status"].GetText())
	require.Equal(t, "red,blue", got["tags"].GetText())
	require.Equal(t, "héllo", got["name"].GetText())
	require.Equal(t, "long text", got["body"].GetText())
	require.Equal(t, []byte{0, 0xff, 1}, got["bin"].GetRaw())
	require.JSONEq(t, `{"a": 1}`, got["doc"].GetText())
	require.InDelta(t, 0.1, got["f"].GetFloat(), 1e-9)
	require.Equal(t, uint64(0x81), got["flags"].GetUint())
	require.Len(t, r.Key, 1)
	require.Equal(t, "id", r.Key[0].Name)

	// An idle stream stays up: the master's heartbeats beat the read timeout.
	idle := New(Options{
		ServerID: 4001, User: db.Users.ReplUser, Password: db.Users.ReplPassword,
		Heartbeat: 100 * time.Millisecond, ReadTimeout: 400 * time.Millisecond, Logger: zerolog.Nop(),
	})
	ictx, icancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer icancel()
	require.NoError(t, idle.Stream(ictx, db.Master.Addr(), pos, func(*Txn) error { return nil }))

	// Without full row metadata the rows cannot be named: the stream fails.
	_, err = admin.Exec("SET GLOBAL binlog_row_metadata = MINIMAL")
	require.NoError(t, err)
	_, err = app.Exec("INSERT INTO types (id, i) VALUES (1, 1)")
	require.NoError(t, err)
	_, err = streamUntil(t, c, db.Master.Addr(), func(*Txn) bool { return false })
	require.ErrorIs(t, err, ErrNoColumnNames)
	require.False(t, c.Streaming())
}
