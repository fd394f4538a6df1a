package harness

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// echoServer serves a line-echo protocol on a free loopback port until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip dials addr, sends a line and reads it back within timeout.
func roundTrip(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo mismatch: " + line)
	}
	return nil
}

func TestToxiproxyEcho(t *testing.T) {
	upstream := echoServer(t)
	p := Toxiproxy(t, "echo", upstream)
	require.NotEqual(t, upstream, p.Listen())
	require.Equal(t, upstream, p.Upstream())
	require.NoError(t, roundTrip(p.Listen(), 2*time.Second))

	// An open connection dies with the cut, and new dials are refused.
	open, err := net.Dial("tcp", p.Listen())
	require.NoError(t, err)
	defer open.Close()
	p.Cut()
	require.NoError(t, open.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = open.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET),
		"the cut closes open connections (EOF or reset), got %v", err)
	_, err = net.DialTimeout("tcp", p.Listen(), time.Second)
	require.Error(t, err, "dials fail while cut")

	p.Restore()
	require.NoError(t, roundTrip(p.Listen(), 2*time.Second))

	const latency = 150 * time.Millisecond
	p.AddLatency(latency)
	began := time.Now()
	require.NoError(t, roundTrip(p.Listen(), 5*time.Second))
	require.GreaterOrEqual(t, time.Since(began), latency)

	p.RemoveToxics()
	p.Blackhole()
	err = roundTrip(p.Listen(), 300*time.Millisecond)
	var nerr net.Error
	require.ErrorAs(t, err, &nerr, "a blackholed link times out")
	require.True(t, nerr.Timeout())

	p.RemoveToxics()
	require.NoError(t, roundTrip(p.Listen(), 2*time.Second))
}

func TestToxiproxyEtcd(t *testing.T) {
	c := StartEtcd(t, 1)
	member := c.Members()[0]
	p := Toxiproxy(t, "etcd", member.ClientURL()[len("http://"):])
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{"http://" + p.Listen()},
		DialTimeout:          time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	put := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		_, err := cli.Put(ctx, "k", "v")
		return err
	}
	require.NoError(t, put(5*time.Second))
	p.Cut()
	require.Error(t, put(500*time.Millisecond), "etcd unreachable through a cut proxy")
	p.Restore()
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error { return check.That(put(time.Second) == nil, "put(time.Second) == nil") })
}
