package apiclient_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/mtls"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func writeLab(t *testing.T, api labfile.API) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, labfile.Write(filepath.Join(dir, "lab.json"), &labfile.Lab{API: api}))
	return dir
}

func TestResolveOrder(t *testing.T) {
	lab := writeLab(t, labfile.API{GRPC: "127.0.0.1:3000", HTTP: "http://127.0.0.1:3001", Token: "lab-token"})
	labFile := filepath.Join(lab, "lab.json")
	vars := map[string]string{apiclient.EnvAPI: "127.0.0.1:2000", apiclient.EnvToken: "env-token"}

	tests := []struct {
		name                string
		flags               apiclient.Flags
		addr, token, source string
	}{
		{"flags win over env and lab",
			apiclient.Flags{API: "127.0.0.1:1000", Token: "flag-token", Lab: lab, Getenv: env(vars)},
			"127.0.0.1:1000", "flag-token", "--api"},
		{"env wins over lab",
			apiclient.Flags{Lab: lab, Getenv: env(vars)},
			"127.0.0.1:2000", "env-token", apiclient.EnvAPI},
		{"lab directory",
			apiclient.Flags{Lab: lab, Getenv: env(nil)},
			"127.0.0.1:3000", "lab-token", "--lab " + labFile},
		{"lab file",
			apiclient.Flags{Lab: labFile, Getenv: env(nil)},
			"127.0.0.1:3000", "lab-token", "--lab " + labFile},
		{"flag address, lab token",
			apiclient.Flags{API: "127.0.0.1:1000", Lab: lab, Getenv: env(nil)},
			"127.0.0.1:1000", "lab-token", "--api"},
		{"env token, lab address",
			apiclient.Flags{Lab: lab, Getenv: env(map[string]string{apiclient.EnvToken: "env-token"})},
			"127.0.0.1:3000", "env-token", "--lab " + labFile},
		{"address without any token",
			apiclient.Flags{API: "127.0.0.1:1000", Getenv: env(nil)},
			"127.0.0.1:1000", "", "--api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.flags.Timeout = 3 * time.Second
			o, err := apiclient.Resolve(tt.flags)
			require.NoError(t, err)
			assert.Equal(t, tt.addr, o.Addr)
			assert.Equal(t, tt.token, o.Token)
			assert.Equal(t, tt.source, o.Source)
			assert.Equal(t, 3*time.Second, o.Timeout)
			assert.Nil(t, o.TLS)
		})
	}
}

func TestResolveLabNotReadWhenFlagsSuffice(t *testing.T) {
	o, err := apiclient.Resolve(apiclient.Flags{API: "127.0.0.1:1", Token: "t", Lab: filepath.Join(t.TempDir(), "missing"), Getenv: env(nil)})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:1", o.Addr)
}

func TestResolveErrors(t *testing.T) {
	noAPI := writeLab(t, labfile.API{Token: "x"})
	garbage := filepath.Join(t.TempDir(), "lab.json")
	require.NoError(t, os.WriteFile(garbage, []byte("{not json"), 0o600))

	_, err := apiclient.Resolve(apiclient.Flags{Getenv: env(nil)})
	require.ErrorIs(t, err, apiclient.ErrNoEndpoint)
	assert.Contains(t, err.Error(), "--api")
	assert.Contains(t, err.Error(), apiclient.EnvAPI)

	_, err = apiclient.Resolve(apiclient.Flags{Lab: filepath.Join(t.TempDir(), "nope"), Getenv: env(nil)})
	require.ErrorIs(t, err, labfile.ErrNoLab)

	_, err = apiclient.Resolve(apiclient.Flags{Lab: t.TempDir(), Getenv: env(nil)}) // directory without lab.json
	require.ErrorIs(t, err, labfile.ErrNoLab)

	_, err = apiclient.Resolve(apiclient.Flags{Lab: noAPI, Getenv: env(nil)})
	require.ErrorIs(t, err, apiclient.ErrNoEndpoint)
	assert.Contains(t, err.Error(), "api.grpc")

	_, err = apiclient.Resolve(apiclient.Flags{Lab: garbage, Getenv: env(nil)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), garbage)

	_, err = apiclient.Resolve(apiclient.Flags{API: "127.0.0.1:1", TLS: mtls.Options{CertFile: garbage}, Getenv: env(nil)})
	require.ErrorIs(t, err, mtls.ErrConfig, "a certificate without its key")

	_, err = apiclient.Resolve(apiclient.Flags{API: "127.0.0.1:1", TLS: mtls.Options{CAFile: garbage}, Getenv: env(nil)})
	require.ErrorIs(t, err, mtls.ErrConfig, "a CA file holding no certificate")
}

// TestResolveRefusesPlaintextToRemote: a token is never sent in clear to an
// address that is not a loopback one unless Insecure says so; the error
// names the address, never the token.
func TestResolveRefusesPlaintextToRemote(t *testing.T) {
	_, err := apiclient.Resolve(apiclient.Flags{API: "10.1.2.3:7700", Token: "s3cret-token", Getenv: env(nil)})
	require.ErrorIs(t, err, apiclient.ErrPlaintext)
	assert.Contains(t, err.Error(), "10.1.2.3:7700")
	assert.Contains(t, err.Error(), "--insecure")
	assert.NotContains(t, err.Error(), "s3cret-token")

	o, err := apiclient.Resolve(apiclient.Flags{API: "10.1.2.3:7700", Token: "t", Insecure: true, Getenv: env(nil)})
	require.NoError(t, err)
	assert.Equal(t, "10.1.2.3:7700", o.Addr)
	_, err = apiclient.Resolve(apiclient.Flags{API: "10.1.2.3:7700", Getenv: env(nil)})
	require.NoError(t, err, "no token, nothing to leak")

	for addr, want := range map[string]bool{
		"127.0.0.1:7700": true, "127.8.9.1:1": true, "[::1]:7700": true, "localhost:7700": true, "dns:///localhost:7700": true,
		"10.0.0.1:7700": false, "0.0.0.0:7700": false, "coordinator.example:7700": false, "localhost.example:1": false,
	} {
		assert.Equal(t, want, apiclient.Loopback(addr), addr)
	}
}
