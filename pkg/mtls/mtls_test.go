package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/mtls"
)

// pki is a throwaway CA with a server and a client certificate, written as
// PEM files.
type pki struct {
	dir                   string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	p.ca, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	p.caKey = key
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	p.serverCert, p.serverKey = p.issue(t, "server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.issue(t, "client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// issue signs a leaf certificate valid for 127.0.0.1 and returns its cert
// and key files.
func (p *pki) issue(t *testing.T, name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", keyDER)
}

// serve runs a TLS echo-once server with cfg on a free loopback port: each
// connection that completes the handshake gets "hello\n". It returns the
// address and a channel of the server-side handshake results.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	results := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				err := c.(*tls.Conn).Handshake()
				results <- err
				if err == nil {
					_, _ = c.Write([]byte("hello\n"))
				}
			}()
		}
	}()
	return ln.Addr().String(), results
}

// exchange dials addr and reads the greeting; the error is the first one
// seen (with TLS 1.3 a refused client certificate shows on the first read).
func exchange(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func serverResult(t *testing.T, results <-chan error) error {
	t.Helper()
	select {
	case err := <-results:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no handshake")
	}
	return nil
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t, "drplane")
	srvCfg, err := mtls.Options{CAFile: p.caFile, CertFile: p.serverCert, KeyFile: p.serverKey}.Server()
	require.NoError(t, err)
	require.Equal(t, tls.RequireAndVerifyClientCert, srvCfg.ClientAuth, "a CA on the server means client certificates are required")
	addr, results := serve(t, srvCfg)

	t.Run("client with certificate connects", func(t *testing.T) {
		cfg, err := mtls.Options{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}.Client()
		require.NoError(t, err)
		got, err := exchange(addr, cfg)
		require.NoError(t, err)
		assert.Equal(t, "hello\n", got)
		require.NoError(t, serverResult(t, results))
	})

	t.Run("client without certificate is refused", func(t *testing.T) {
		cfg, err := mtls.Options{CAFile: p.caFile}.Client()
		require.NoError(t, err)
		got, err := exchange(addr, cfg)
		require.Error(t, err)
		assert.Empty(t, got)
		srvErr := serverResult(t, results)
		require.Error(t, srvErr)
		assert.Contains(t, srvErr.Error(), "certificate")
	})

	t.Run("client certificate from another CA is refused", func(t *testing.T) {
		other := newPKI(t, "intruder")
		cfg, err := mtls.Options{CAFile: p.caFile, CertFile: other.clientCert, KeyFile: other.clientKey}.Client()
		require.NoError(t, err)
		// Go's client withholds a certificate the server's CA list does not
		// name; present it anyway, as a hostile client would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cfg.Certificates[0], nil
		}
		got, err := exchange(addr, cfg)
		require.Error(t, err)
		assert.Empty(t, got)
		srvErr := serverResult(t, results)
		var unknown x509.UnknownAuthorityError
		require.True(t, errors.As(srvErr, &unknown), "server error: %T %v", srvErr, srvErr)
	})

	t.Run("client verifies the server against its CA", func(t *testing.T) {
		other := newPKI(t, "elsewhere")
		cfg, err := mtls.Options{CAFile: other.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}.Client()
		require.NoError(t, err)
		_, err = exchange(addr, cfg)
		var unknown x509.UnknownAuthorityError
		require.True(t, errors.As(err, &unknown), "client error: %v", err)
		_ = serverResult(t, results)
	})

	t.Run("server name override is verified", func(t *testing.T) {
		cfg, err := mtls.Options{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "db.example"}.Client()
		require.NoError(t, err)
		assert.Equal(t, "db.example", cfg.ServerName)
		_, err = exchange(addr, cfg)
		var host x509.HostnameError
		require.True(t, errors.As(err, &host), "client error: %v", err)
		_ = serverResult(t, results)
	})
}

func TestServerWithoutCAAcceptsAnyClient(t *testing.T) {
	p := newPKI(t, "drplane")
	srvCfg, err := mtls.Options{CertFile: p.serverCert, KeyFile: p.serverKey}.Server()
	require.NoError(t, err)
	require.Equal(t, tls.NoClientCert, srvCfg.ClientAuth)
	addr, results := serve(t, srvCfg)
	cfg, err := mtls.Options{CAFile: p.caFile}.Client()
	require.NoError(t, err)
	got, err := exchange(addr, cfg)
	require.NoError(t, err)
	assert.Equal(t, "hello\n", got)
	require.NoError(t, serverResult(t, results))
}

func TestDisabled(t *testing.T) {
	var o mtls.Options
	assert.False(t, o.Enabled())
	require.NoError(t, o.Validate("api.tls"))
	c, err := o.Client()
	require.NoError(t, err)
	assert.Nil(t, c, "no files: TLS off")
	s, err := o.Server()
	require.NoError(t, err)
	assert.Nil(t, s)
}

func TestValidateAndLoadErrors(t *testing.T) {
	p := newPKI(t, "drplane")
	missing := filepath.Join(t.TempDir(), "nope.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))

	tests := []struct {
		name string
		o    mtls.Options
		want []string // substrings of the Validate error; nil: valid
	}{
		{"complete", mtls.Options{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}, nil},
		{"CA only", mtls.Options{CAFile: p.caFile}, nil},
		{"cert without key", mtls.Options{CAFile: p.caFile, CertFile: p.clientCert}, []string{"etcd.tls", "cert_file and key_file go together"}},
		{"key without cert", mtls.Options{KeyFile: p.clientKey}, []string{"etcd.tls", "cert_file and key_file go together"}},
		{"missing CA file", mtls.Options{CAFile: missing}, []string{"etcd.tls", missing}},
		{"missing key file", mtls.Options{CertFile: p.clientCert, KeyFile: missing}, []string{"etcd.tls", missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate("etcd.tls")
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, mtls.ErrConfig)
			for _, s := range tt.want {
				assert.Contains(t, err.Error(), s)
			}
		})
	}

	t.Run("server needs a certificate", func(t *testing.T) {
		_, err := mtls.Options{CAFile: p.caFile}.Server()
		require.ErrorIs(t, err, mtls.ErrConfig)
	})
	t.Run("CA file without PEM", func(t *testing.T) {
		_, err := mtls.Options{CAFile: garbage}.Client()
		require.ErrorIs(t, err, mtls.ErrConfig)
		assert.Contains(t, err.Error(), "holds no PEM certificate")
	})
	t.Run("key that does not match the certificate", func(t *testing.T) {
		_, err := mtls.Options{CertFile: p.clientCert, KeyFile: p.serverKey}.Client()
		require.ErrorIs(t, err, mtls.ErrConfig)
	})
	t.Run("missing CA file at load", func(t *testing.T) {
		_, err := mtls.Options{CAFile: missing, CertFile: p.serverCert, KeyFile: p.serverKey}.Server()
		require.ErrorIs(t, err, mtls.ErrConfig)
	})
}
