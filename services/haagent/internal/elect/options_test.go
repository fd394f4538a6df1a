package elect

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

func TestOptionsValidate(t *testing.T) {
	cli := &clientv3.Client{}
	valid := func() Options {
		return Options{Client: cli, Store: state.New(cli, ""), DC: "dc-a1", ID: "agent-1", TTL: 2 * time.Second,
			SelfFence: func(context.Context, string) {}}
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string // "" when valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"no client", func(o *Options) { o.Client = nil }, "Client is required"},
		{"no store", func(o *Options) { o.Store = nil }, "Store is required"},
		{"no dc", func(o *Options) { o.DC = "" }, "DC"},
		{"slash in dc", func(o *Options) { o.DC = "a/b" }, "DC"},
		{"no id", func(o *Options) { o.ID = "" }, "ID is required"},
		{"no self-fence", func(o *Options) { o.SelfFence = nil }, "SelfFence is required"},
		{"sub-second ttl", func(o *Options) { o.TTL = 500 * time.Millisecond }, "TTL"},
		{"fence before ttl", func(o *Options) { o.FenceBefore = 2 * time.Second }, "FenceBefore"},
		{"negative fence", func(o *Options) { o.FenceBefore = -time.Second }, "FenceBefore"},
		{"slow check", func(o *Options) { o.Check = 400 * time.Millisecond }, "Check"},
		{"negative backoff", func(o *Options) { o.Backoff = -1 }, "Backoff"},
		{"explicit", func(o *Options) { o.TTL, o.FenceBefore, o.Check = 5*time.Second, 2*time.Second, 100*time.Millisecond }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(&o)
			_, err := New(o)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrOptions)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTimingDefaults(t *testing.T) {
	o := Options{TTL: 2 * time.Second}
	tm := o.timing(2 * time.Second)
	assert.Equal(t, timing{ttl: 2 * time.Second, fenceBefore: 2 * time.Second / 3, check: 2 * time.Second / 12}, tm)
	// Defaults follow the TTL etcd granted; explicit values stay.
	assert.Equal(t, time.Second, o.timing(3*time.Second).fenceBefore)
	o.FenceBefore = 500 * time.Millisecond
	assert.Equal(t, 500*time.Millisecond, o.timing(3*time.Second).fenceBefore)
	assert.Equal(t, int64(3), ttlSeconds(2001*time.Millisecond))
	assert.Equal(t, int64(2), ttlSeconds(2*time.Second))
}

func TestDecisionBudget(t *testing.T) {
	tm := timing{ttl: 6 * time.Second, fenceBefore: 2 * time.Second, check: 200 * time.Millisecond}
	last := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return last.Add(d) }
	for _, tc := range []struct {
		name string
		now  time.Time
		spp  bool
		want time.Duration
		ok   bool
	}{
		{"stale just now", at(4 * time.Second), false, time.Second, true},
		{"seen one tick late", at(4200 * time.Millisecond), false, 800 * time.Millisecond, true},
		{"seen too late", at(5 * time.Second), false, 0, false},
		{"past the ttl", at(7 * time.Second), false, -2 * time.Second, false},
		{"no quorum: no lease can expire", at(30 * time.Second), true, time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decisionBudget(tc.now, last, tm, tc.spp)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}
