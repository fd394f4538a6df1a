package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/services/haagent/internal/hatest"
)

// TestDCLeaseFollowsTheActiveAgent: the active agent keeps the DC lease;
// when it stops, the standby takes the leadership and the lease over; when
// no agent of the DC is left, the lease is gone.
func TestDCLeaseFollowsTheActiveAgent(t *testing.T) {
	e := hatest.Start(t, hatest.Options{})
	a1 := startAgent(t, e, testConfig(e, "agent-1"), nil)
	a2 := startAgent(t, e, testConfig(e, "agent-2"), nil)
	first := leader(t, a1, a2)
	holder := func() (string, error) {
		ls, _, err := e.Store.DCLeases(context.Background())
		if err != nil {
			return "", err
		}
		l, ok := ls[hatest.DC]
		if !ok {
			return "", errors.New("no DC lease")
		}
		return l.Agent, nil
	}
	check.For(t, 10*time.Second, check.Every, func() error {
		h, err := holder()
		if err != nil {
			return err
		}
		return check.That(h == first.id, "DC lease held by %s, want %s", h, first.id)
	})
	second := a2
	if first == a2 {
		second = a1
	}
	first.stop(errors.New("stopped by the test"))
	check.For(t, 15*time.Second, check.Every, func() error {
		h, err := holder()
		if err != nil {
			return err
		}
		return check.That(h == second.id, "DC lease held by %s, want %s", h, second.id)
	})
	second.stop(errors.New("stopped by the test"))
	check.For(t, 15*time.Second, check.Every, func() error {
		_, err := holder()
		return check.That(err != nil, "the DC lease outlived every agent of the DC")
	})
}
