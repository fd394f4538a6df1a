package mysqld

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MySQL error numbers this package and its callers look at.
const (
	// errnoAccessDenied is ER_ACCESS_DENIED_ERROR.
	errnoAccessDenied = 1045
	// ErrnoReadOnly is ER_OPTION_PREVENTS_STATEMENT, returned to a user
	// without READ_ONLY ADMIN writing to a read_only server.
	ErrnoReadOnly = 1290
	// errnoNoSuchThread is ER_NO_SUCH_THREAD (KILL of a finished connection).
	errnoNoSuchThread = 1094
)

// ErrorNumber returns the MySQL error number carried by err, or 0.
func ErrorNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// isMySQLError reports whether err carries MySQL error number n.
func isMySQLError(err error, n uint16) bool {
	return err != nil && ErrorNumber(err) == n
}

// IsReadOnly reports whether err is the server refusing a write because it is
// read_only (error 1290).
func IsReadOnly(err error) bool { return isMySQLError(err, ErrnoReadOnly) }

// quoteString renders s as a single-quoted SQL string literal. The server
// runs with the default sql_mode, where backslash is an escape character.
func quoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\x1a':
			b.WriteString(`\Z`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// quoteIdent renders s as a backquoted SQL identifier.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// account renders 'user'@'host'.
func account(user, host string) string {
	return quoteString(user) + "@" + quoteString(host)
}

// execAll runs statements in order on one connection and stops at the first
// error, naming the statement.
func execAll(ctx context.Context, db *sql.DB, stmts ...string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysqld: connect: %w", err)
	}
	defer func() { _ = conn.Close() }()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("mysqld: %s: %w", redact(s), err)
		}
	}
	return nil
}

// redact cuts a statement after a password clause so errors never carry
// secrets.
func redact(stmt string) string {
	upper := strings.ToUpper(stmt)
	for _, key := range []string{"IDENTIFIED BY", "MASTER_PASSWORD"} {
		if i := strings.Index(upper, key); i >= 0 {
			return stmt[:i+len(key)] + " …"
		}
	}
	return stmt
}
