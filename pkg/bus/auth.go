package bus

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/mtls"
)

// Auth is how a service authenticates to its DC's NATS and secures the
// connection (configuration key "nats"). At most one of User (with
// Password), Token, CredsFile and NKeyFile; TLS is independent of them.
// Credentials may also be in the URL (nats://user:pass@host): those are
// redacted from every message, but a file is better.
type Auth struct {
	User     string        `yaml:"user,omitempty"`
	Password config.Secret `yaml:"password,omitempty"`
	Token    config.Secret `yaml:"token,omitempty"`
	// CredsFile is a NATS credentials file (a user JWT and its nkey seed).
	CredsFile string `yaml:"creds_file,omitempty"`
	// NKeyFile holds an nkey user seed.
	NKeyFile string `yaml:"nkey_file,omitempty"`
	// TLS: a CA file verifies the server; a certificate and key are the
	// client's (for servers that verify clients).
	TLS mtls.Options `yaml:"tls,omitempty"`
}

// Validate checks the options, naming the field under prefix (e.g. "nats").
func (a Auth) Validate(prefix string) error {
	n := 0
	for _, set := range []bool{a.User != "", a.Token != "", a.CredsFile != "", a.NKeyFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return config.Invalid(prefix, "give at most one of user, token, creds_file and nkey_file")
	case a.User != "" && a.Password == "":
		return config.Invalid(prefix+".password", "required with user")
	case a.User == "" && a.Password != "":
		return config.Invalid(prefix+".user", "required with password")
	}
	for field, file := range map[string]string{prefix + ".creds_file": a.CredsFile, prefix + ".nkey_file": a.NKeyFile} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			return config.Invalid(field, "%v", err)
		}
	}
	if err := a.TLS.Validate(prefix + ".tls"); err != nil {
		return config.Invalid(prefix+".tls", "%v", err)
	}
	return nil
}

// Options are the nats.go options that apply a.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password.Reveal()))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token.Reveal()))
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey file %s: %w", a.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if a.TLS.Enabled() {
		cfg, err := a.TLS.Client()
		if err != nil {
			return nil, fmt.Errorf("bus: NATS TLS: %w", err)
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}
