package mysqld_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/mysqld"
)

func TestSplitAddr(t *testing.T) {
	host, port, err := mysqld.SplitAddr("127.0.0.1:3306")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.Equal(t, 3306, port)
	host, port, err = mysqld.SplitAddr("[::1]:13306")
	require.NoError(t, err)
	require.Equal(t, "::1", host)
	require.Equal(t, 13306, port)
	for _, bad := range []string{"", "db1", "db1:", "db1:x", "db1:-1", "db1:70000"} {
		_, _, err := mysqld.SplitAddr(bad)
		require.Error(t, err, "%q", bad)
		require.Contains(t, err.Error(), `mysqld: address "`+bad+`"`)
	}
}

func TestPools(t *testing.T) {
	c := harness.StartMariaDB(t, harness.MariaDBOptions{Instances: 1})
	ctx := context.Background()
	addr := c.Master.Addr()
	p := mysqld.NewPools(mysqld.PoolOptions{
		User: c.Users.AdminUser, Password: c.Users.AdminPassword,
		DialTimeout: 2 * time.Second, IOTimeout: 300 * time.Millisecond, MaxOpen: 3, MaxIdle: 1,
	})
	t.Cleanup(p.Close)

	db := p.DB(addr)
	require.Same(t, db, p.DB(addr), "one pool per address")
	_, port, err := mysqld.SplitAddr(addr)
	require.NoError(t, err)
	other := p.DB(net.JoinHostPort("localhost", strconv.Itoa(port)))
	require.NotSame(t, db, other, "another address is another pool")

	var one int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
	require.Equal(t, 3, db.Stats().MaxOpenConnections)

	// The IO timeout cuts a statement that answers later than it.
	began := time.Now()
	err = db.QueryRowContext(ctx, "SELECT SLEEP(2)").Scan(&one)
	require.Error(t, err, "a read longer than the IO timeout must fail")
	require.Less(t, time.Since(began), 1500*time.Millisecond, "the read must end at the IO timeout, not with the statement")

	// A wrong password is the server's refusal, on first use.
	bad := mysqld.NewPools(mysqld.PoolOptions{User: c.Users.AdminUser, Password: "wrong", DialTimeout: 2 * time.Second})
	t.Cleanup(bad.Close)
	err = bad.DB(addr).PingContext(ctx)
	var myErr *mysql.MySQLError
	require.True(t, errors.As(err, &myErr), "want a MySQL error, got %v", err)
	require.Equal(t, uint16(1045), myErr.Number, "access denied")

	p.Close()
	require.Error(t, db.PingContext(ctx), "Close closes the pools")
	again := p.DB(addr)
	require.NotSame(t, db, again, "after Close a new pool is opened")
	require.NoError(t, again.PingContext(ctx))
}
