package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/mtls"
)

// TestConnectWithAuth: servers that require a user and password (also on
// their leafnode links) refuse a client without them, or with a wrong
// password, without printing it; with them the client reaches JetStream and
// messages cross to the other DC.
func TestConnectWithAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	mesh, err := embednats.Start(ctx, embednats.Options{
		DCs: []string{"dc-a1", "dc-b1"}, Dir: t.TempDir(), Logger: zerolog.Nop(), User: "drplane", Password: "s3cret-pw",
	})
	require.NoError(t, err)
	t.Cleanup(mesh.Close)

	_, err = bus.Connect(ctx, mesh.URL("dc-a1"), "no-auth", zerolog.Nop(), nats.MaxReconnects(0))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Authorization Violation")
	wrong, err := bus.Auth{User: "drplane", Password: "guessed-pw"}.Options()
	require.NoError(t, err)
	_, err = bus.Connect(ctx, mesh.URL("dc-a1"), "wrong", zerolog.Nop(), wrong...)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "guessed-pw")

	auth := bus.Auth{User: "drplane", Password: config.Secret("s3cret-pw")}
	require.NoError(t, auth.Validate("nats"))
	opts, err := auth.Options()
	require.NoError(t, err)
	js := map[string]jetstream.JetStream{}
	for _, dc := range mesh.DCs() {
		nc, err := bus.Connect(ctx, mesh.URL(dc), "auth-"+dc, zerolog.Nop(), opts...)
		require.NoError(t, err, dc)
		t.Cleanup(nc.Close)
		js[dc], err = jetstream.New(nc)
		require.NoError(t, err)
	}
	require.NoError(t, embednats.EnsureCrossDC(ctx, js, embednats.StreamOptions{}))
	_, err = js["dc-a1"].Publish(ctx, embednats.OutSubject("dc-a1")+".orders.0", []byte("x"))
	require.NoError(t, err)
	check.For(t, 20*time.Second, 20*time.Millisecond, func() error {
		s, err := js["dc-b1"].Stream(ctx, embednats.InStream("dc-b1"))
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		return check.That(info.State.Msgs == 1, "dc-b1's inbound stream holds %d messages, want 1 (over the authenticated leafnode)", info.State.Msgs)
	})
}

func TestAuthValidate(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "u.creds")
	require.NoError(t, os.WriteFile(creds, []byte("x"), 0o600))
	for _, tt := range []struct {
		name  string
		auth  bus.Auth
		field string // empty: valid
	}{
		{name: "none", auth: bus.Auth{}},
		{name: "user and password", auth: bus.Auth{User: "u", Password: "p"}},
		{name: "token", auth: bus.Auth{Token: "t"}},
		{name: "creds file", auth: bus.Auth{CredsFile: creds}},
		{name: "user without password", auth: bus.Auth{User: "u"}, field: "nats.password"},
		{name: "password without user", auth: bus.Auth{Password: "p"}, field: "nats.user"},
		{name: "two methods", auth: bus.Auth{User: "u", Password: "p", Token: "t"}, field: "nats"},
		{name: "missing creds file", auth: bus.Auth{CredsFile: creds + ".gone"}, field: "nats.creds_file"},
		{name: "missing CA", auth: bus.Auth{TLS: mtls.Options{CAFile: creds + ".gone"}}, field: "nats.tls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.auth.Validate("nats")
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
		})
	}
}
