package apiclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/mtls"
)

// Environment variables Resolve reads.
const (
	EnvAPI   = "DRPLANE_API"
	EnvToken = "DRPLANE_TOKEN"
)

// ErrNoEndpoint means nothing named the API's address.
var ErrNoEndpoint = errors.New("apiclient: no API endpoint")

// ErrPlaintext means the token would be sent in clear to an address that is
// not this host's: TLS (--tls-ca) or an explicit Flags.Insecure is needed.
var ErrPlaintext = errors.New("apiclient: refusing to send the bearer token in clear")

// Flags is what an operator gave on the command line.
type Flags struct {
	// API is --api: host:port of the coordinator's gRPC endpoint.
	API string
	// Token is --token.
	Token string
	// Lab is --lab: a lab.json, or the lab directory holding one.
	Lab string
	// TLS names the --tls-ca/--tls-cert/--tls-key files; all empty means
	// plaintext.
	TLS mtls.Options
	// Timeout becomes Options.Timeout.
	Timeout time.Duration
	// Insecure is --insecure: allow a plaintext connection carrying the
	// token to an address that is not a loopback one.
	Insecure bool
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// Resolve picks the endpoint and token, each from the first place that
// gives one: the --api/--token flags, then DRPLANE_API/DRPLANE_TOKEN, then
// the lab file's api.grpc/api.token. The lab file is read only when a flag
// or variable left something open. It fails with ErrNoEndpoint when no place
// names an address, with labfile.ErrNoLab when --lab points at nothing, and
// with mtls.ErrConfig when the TLS files are unusable.
func Resolve(f Flags) (Options, error) {
	getenv := f.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	o := Options{Timeout: f.Timeout}
	switch {
	case f.API != "":
		o.Addr, o.Source = f.API, "--api"
	case getenv(EnvAPI) != "":
		o.Addr, o.Source = getenv(EnvAPI), EnvAPI
	}
	switch {
	case f.Token != "":
		o.Token = f.Token
	case getenv(EnvToken) != "":
		o.Token = getenv(EnvToken)
	}
	if (o.Addr == "" || o.Token == "") && f.Lab != "" {
		path := labfile.Path(f.Lab)
		lab, err := labfile.Read(path)
		if err != nil {
			return Options{}, fmt.Errorf("apiclient: --lab: %w", err)
		}
		if o.Addr == "" {
			if lab.API.GRPC == "" {
				return Options{}, fmt.Errorf("%w: %s has no api.grpc", ErrNoEndpoint, path)
			}
			o.Addr, o.Source = lab.API.GRPC, "--lab "+path
		}
		if o.Token == "" {
			o.Token = lab.API.Token
		}
	}
	if o.Addr == "" {
		return Options{}, fmt.Errorf("%w: pass --api HOST:PORT, set %s, or point --lab at a lab.json", ErrNoEndpoint, EnvAPI)
	}
	if err := f.TLS.Validate("tls"); err != nil {
		return Options{}, err
	}
	tc, err := f.TLS.Client()
	if err != nil {
		return Options{}, err
	}
	o.TLS = tc
	if o.TLS == nil && o.Token != "" && !f.Insecure && !Loopback(o.Addr) {
		return Options{}, fmt.Errorf("%w to %s (from %s), which is not a loopback address: pass --tls-ca to use TLS, or --insecure to send it anyway",
			ErrPlaintext, o.Addr, o.Source)
	}
	return o, nil
}

// Loopback reports whether addr ("host:port", optionally with a gRPC
// "dns:///" or "passthrough:///" scheme) names this host: localhost or a
// loopback IP. Any other name may resolve anywhere.
func Loopback(addr string) bool {
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		addr = strings.TrimPrefix(addr, scheme)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}
