package freeport

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestPickBindable(t *testing.T) {
	ports, err := Pick(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p < portLow || p >= portHigh {
			t.Fatalf("bad port %d in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		_, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if !InUse(err) {
			t.Fatalf("second bind of %d: want address in use, got %v", p, err)
		}
		_ = l.Close()
	}
	if InUse(nil) {
		t.Fatal("nil is not in use")
	}
}

func TestRetry(t *testing.T) {
	calls := 0
	inUse := &net.OpError{Op: "listen", Err: fmt.Errorf("bind: address already in use")}
	err := Retry(2, func(ports []int) error {
		calls++
		if len(ports) != 2 {
			t.Fatalf("got %d ports", len(ports))
		}
		if calls < 3 {
			return inUse
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	if err := Retry(1, func([]int) error { calls++; return inUse }); !InUse(err) || calls != Attempts {
		t.Fatalf("Retry = %v after %d calls, want in-use after %d", err, calls, Attempts)
	}
	other := fmt.Errorf("boom")
	calls = 0
	if err := Retry(1, func([]int) error { calls++; return other }); !errors.Is(err, other) || calls != 1 {
		t.Fatalf("Retry = %v after %d calls, want boom after 1", err, calls)
	}
}
