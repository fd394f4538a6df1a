package mysqld

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

func TestQuoteString(t *testing.T) {
	tests := map[string]string{
		"":            `''`,
		"plain":       `'plain'`,
		"it's":        `'it\'s'`,
		`back\slash`:  `'back\\slash'`,
		"nul\x00byte": `'nul\0byte'`,
		"line\nbreak": `'line\nbreak'`,
		"cr\r\x1a":    `'cr\r\Z'`,
		"ünïcödé":     `'ünïcödé'`,
	}
	for in, want := range tests {
		require.Equal(t, want, quoteString(in), "quoteString(%q)", in)
	}
}

func TestQuoteIdent(t *testing.T) {
	require.Equal(t, "`shop`", quoteIdent("shop"))
	require.Equal(t, "`we``ird`", quoteIdent("we`ird"))
	require.Equal(t, `'app'@'%'`, account("app", "%"))
}

func TestRedact(t *testing.T) {
	require.Equal(t, "ALTER USER 'a'@'%' IDENTIFIED BY …",
		redact("ALTER USER 'a'@'%' IDENTIFIED BY 'secret'"))
	require.Equal(t, "CHANGE MASTER TO MASTER_HOST = 'h', MASTER_PASSWORD …",
		redact("CHANGE MASTER TO MASTER_HOST = 'h', MASTER_PASSWORD = 'secret'"))
	require.Equal(t, "START SLAVE", redact("START SLAVE"))
}

func TestErrorNumber(t *testing.T) {
	ro := &mysql.MySQLError{Number: ErrnoReadOnly, Message: "The MariaDB server is running with the --read-only option"}
	wrapped := fmt.Errorf("insert: %w", ro)
	require.Equal(t, uint16(ErrnoReadOnly), ErrorNumber(wrapped))
	require.True(t, IsReadOnly(wrapped))
	require.Zero(t, ErrorNumber(errors.New("other")))
	require.False(t, IsReadOnly(nil))
}

func TestChangeMasterRejectsBadMode(t *testing.T) {
	err := ChangeMaster(context.Background(), nil, "127.0.0.1", 3306, "repl", "pw", "no")
	require.ErrorIs(t, err, ErrBadGTIDMode)
}
