package durable

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
)

func pos(t *testing.T, s string) gtid.Pos {
	t.Helper()
	p, err := gtid.ParsePos(s)
	require.NoError(t, err)
	return p
}

func TestDurable(t *testing.T) {
	read := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		masterID uint32
		master   *masterObs
		replicas map[string]replicaObs
		gtid     string
		want     bool
	}{
		{name: "nothing polled yet", gtid: "1-1-5"},
		{name: "a replica of the master received it", masterID: 1, gtid: "1-1-5", want: true,
			replicas: map[string]replicaObs{"r1": {masterID: 1, received: pos(t, "1-1-5")}}},
		{name: "received past it", masterID: 1, gtid: "1-1-5", want: true,
			replicas: map[string]replicaObs{"r1": {masterID: 1, received: pos(t, "1-1-9,2-3-4")}}},
		{name: "applied counts too", masterID: 1, gtid: "1-1-5", want: true,
			replicas: map[string]replicaObs{"r1": {masterID: 1, applied: pos(t, "1-1-5")}}},
		{name: "replicas behind", masterID: 1, gtid: "1-1-5",
			replicas: map[string]replicaObs{"r1": {masterID: 1, received: pos(t, "1-1-4")}, "r2": {masterID: 1}}},
		{name: "other domain only", masterID: 1, gtid: "1-1-5",
			replicas: map[string]replicaObs{"r1": {masterID: 1, received: pos(t, "2-1-50")}}},
		{name: "a replica of another master does not count", masterID: 1, gtid: "1-1-5",
			replicas: map[string]replicaObs{"r1": {masterID: 2, received: pos(t, "1-2-7")}}},
		{name: "master not waiting, seen after the read", masterID: 1, gtid: "1-1-5", want: true,
			master: &masterObs{started: read.Add(time.Millisecond), serverID: 1}},
		{name: "master not waiting, seen before the read", masterID: 1, gtid: "1-1-5",
			master: &masterObs{started: read.Add(-time.Millisecond), serverID: 1}},
		{name: "master waits for an acknowledgement", masterID: 1, gtid: "1-1-5",
			master: &masterObs{started: read.Add(time.Second), serverID: 1, waits: true}},
		{name: "another server at the master's address", masterID: 1, gtid: "1-1-5",
			master: &masterObs{started: read.Add(time.Second), serverID: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Options{Master: "m", MasterID: tc.masterID})
			if tc.master != nil {
				g.master, g.haveM = *tc.master, true
			}
			if tc.replicas != nil {
				g.replicas = tc.replicas
			}
			require.Equal(t, tc.want, g.Durable(tc.gtid, read))
		})
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	g := New(Options{Master: "m"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, g.Wait(ctx, "1-1-5", time.Now()), context.DeadlineExceeded)
	require.ErrorIs(t, g.Wait(context.Background(), "junk", time.Now()), ErrBadGTID)
	g.mu.Lock()
	defer g.mu.Unlock()
	require.Zero(t, g.waiting, "a waiter that left is not counted")
}
