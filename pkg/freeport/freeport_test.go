package freeport

import (
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
