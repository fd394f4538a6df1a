// Package mtls builds TLS configurations for mutual TLS between drplane
// components from certificate files named in configuration.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrConfig is wrapped by every error of this package.
var ErrConfig = errors.New("mtls: bad configuration")

// Options names the PEM files. All empty means TLS is off.
type Options struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name verified in the peer's certificate (clients only).
	ServerName string `yaml:"server_name,omitempty"`
}

// Enabled reports whether any file is configured.
func (o Options) Enabled() bool { return o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" }

// Validate checks that the files come as a set that can work.
func (o Options) Validate(field string) error {
	if !o.Enabled() {
		return nil
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return fmt.Errorf("%w: %s: cert_file and key_file go together", ErrConfig, field)
	}
	for _, f := range []string{o.CAFile, o.CertFile, o.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrConfig, field, err)
		}
	}
	return nil
}

func (o Options) load() (*x509.CertPool, []tls.Certificate, error) {
	var pool *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, o.CAFile)
		}
	}
	var certs []tls.Certificate
	if o.CertFile != "" {
		c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		certs = []tls.Certificate{c}
	}
	return pool, certs, nil
}

// Client returns a client configuration presenting the certificate (if any)
// and verifying the server against the CA (if any). Nil when TLS is off.
func (o Options) Client() (*tls.Config, error) {
	if !o.Enabled() {
		return nil, nil
	}
	pool, certs, err := o.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: certs, ServerName: o.ServerName}, nil
}

// Server returns a server configuration. With a CA, client certificates are
// required and verified against it (mutual TLS). Nil when TLS is off.
func (o Options) Server() (*tls.Config, error) {
	if !o.Enabled() {
		return nil, nil
	}
	if o.CertFile == "" {
		return nil, fmt.Errorf("%w: a server needs cert_file and key_file", ErrConfig)
	}
	pool, certs, err := o.load()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if pool != nil {
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
