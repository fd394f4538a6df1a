package bus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/bus"
	"github.com/drplane/drplane/pkg/freeport"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                    "nats://127.0.0.1:4222",
		"nats://app:s3cret@nats-1:4222":            "nats://redacted@nats-1:4222",
		"nats://tok3n@nats-1:4222, tls://u:p@n2:1": "nats://redacted@nats-1:4222,tls://redacted@n2:1",
		"nats://u:p%zz@host:4222":                  "nats://(unparsable URL)",
	} {
		got := bus.Redact(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, "s3cret")
		assert.NotContains(t, got, "tok3n")
	}
}

// A failed connection's error does not carry the URL's password.
func TestConnectErrorRedacted(t *testing.T) {
	ports, err := freeport.Pick(1)
	require.NoError(t, err)
	_, err = bus.Connect(context.Background(), fmt.Sprintf("nats://app:s3cret@127.0.0.1:%d", ports[0]), "t", zerolog.Nop())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), "redacted@127.0.0.1")
}
