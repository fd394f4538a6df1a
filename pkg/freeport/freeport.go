// Package freeport picks free loopback TCP ports for servers started in
// tests and in the lab, below the kernel's ephemeral range.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoPorts means not enough free ports were found.
var ErrNoPorts = errors.New("freeport: no free ports")

// Ports are drawn below the Linux default ephemeral range (32768–60999) so that outgoing connections and
// ":0" listeners elsewhere on the box do not take them between the pick and the bind.
const (
	portLow  = 20000
	portHigh = 32000
)

// Pick returns n distinct loopback TCP ports that were free when probed. A port can still be taken
// before the caller binds it; callers retry on an address-in-use error.
func Pick(n int) ([]int, error) {
	seen := make(map[int]bool, n)
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n && attempt < n*100; attempt++ {
		p := portLow + rand.IntN(portHigh-portLow)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			return nil, fmt.Errorf("%w: closing probe listener: %w", ErrNoPorts, err)
		}
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("%w: found %d of %d free ports", ErrNoPorts, len(ports), n)
	}
	return ports, nil
}

// InUse reports whether err comes from binding a port that is already taken.
func InUse(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// Attempts is how often Retry starts a server before it gives up.
const Attempts = 5

// Retry picks n ports and calls start with them, picking new ports and
// calling it again while start fails because a port was taken between the
// pick and the bind (up to Attempts times). Any other error ends it.
func Retry(n int, start func(ports []int) error) error {
	var err error
	for attempt := 1; attempt <= Attempts; attempt++ {
		var ports []int
		if ports, err = Pick(n); err != nil {
			return err
		}
		if err = start(ports); err == nil || !InUse(err) {
			return err
		}
	}
	return err
}
