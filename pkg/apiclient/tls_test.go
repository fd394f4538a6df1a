package apiclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/mtls"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// pki writes a CA and two leaf certificates signed by it (server for
// 127.0.0.1, client) as PEM files in a temporary directory.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "drplane test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	p := pki{ca: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	stc, err := mtls.Options{CAFile: p.ca, CertFile: p.serverCert, KeyFile: p.serverKey}.Server()
	require.NoError(t, err)
	addr, srv := serve(t, stc)

	call := func(tlsFiles mtls.Options) error {
		o, err := apiclient.Resolve(apiclient.Flags{API: addr, Token: "tok", TLS: tlsFiles, Timeout: 5 * time.Second, Getenv: env(nil)})
		require.NoError(t, err)
		require.NotNil(t, o.TLS)
		c := dial(t, o)
		_, err = c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{})
		return err
	}

	require.NoError(t, call(mtls.Options{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}))
	got := <-srv.calls
	assert.Equal(t, []string{"Bearer tok"}, got.auth, "the token travels inside TLS too")

	// Without a client certificate the server refuses the handshake.
	err = call(mtls.Options{CAFile: p.ca})
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, apierr.CodeOf(err), "got %v", err)

	// Plaintext against a TLS server does not get through either.
	c := dial(t, apiclient.Options{Addr: addr, Token: "tok", Timeout: 2 * time.Second})
	_, err = c.Topology.GetStatus(context.Background(), &drplanev1.GetStatusRequest{})
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, apierr.CodeOf(err), "got %v", err)
	assert.Empty(t, srv.calls, "no call reached the handler without mTLS")
}
