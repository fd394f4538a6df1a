package daemon

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/logging"
	"github.com/drplane/drplane/pkg/mtls"
)

// Common is the configuration every service shares. Services embed it
// inline in their own configuration struct.
type Common struct {
	// DC is the data center this process serves.
	DC string `yaml:"dc"`
	// ID identifies this process among its peers (default host-pid).
	ID string `yaml:"id"`
	// HealthAddr serves /healthz, /readyz and /metrics.
	HealthAddr string          `yaml:"health_addr"`
	Etcd       Etcd            `yaml:"etcd"`
	Log        logging.Options `yaml:"log"`
}

// Etcd says how to reach the global etcd.
type Etcd struct {
	Endpoints   []string      `yaml:"endpoints"`
	Prefix      string        `yaml:"prefix"`
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// LeaseTTL is the registration lease of this process.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	Username string        `yaml:"username,omitempty"`
	Password config.Secret `yaml:"password,omitempty"`
	TLS      mtls.Options  `yaml:"tls,omitempty"`
}

// DefaultCommon returns the defaults.
func DefaultCommon() Common {
	host, _ := os.Hostname()
	return Common{
		ID:         fmt.Sprintf("%s-%d", host, os.Getpid()),
		HealthAddr: "127.0.0.1:0",
		Etcd:       Etcd{Prefix: "/drplane", DialTimeout: 5 * time.Second, LeaseTTL: 5 * time.Second},
		Log:        logging.Options{Level: "info", Format: "json"},
	}
}

// Base returns c; it lets Main reach the common part of any service config.
func (c *Common) Base() *Common { return c }

// BindFlags binds the common flags to c.
func (c *Common) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DC, "dc", c.DC, "data center this process serves")
	fs.StringVar(&c.ID, "id", c.ID, "process id among peers")
	fs.StringVar(&c.HealthAddr, "health-addr", c.HealthAddr, "listen address of /healthz, /readyz, /metrics")
	fs.StringSliceVar(&c.Etcd.Endpoints, "etcd", c.Etcd.Endpoints, "etcd endpoints (comma separated URLs)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "log level: trace, debug, info, warn, error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log format: json or console")
}

// Validate checks the common configuration, naming the field.
func (c *Common) Validate() error {
	if c.DC == "" {
		return config.Invalid("dc", "required (the data center this process serves)")
	}
	if c.ID == "" {
		return config.Invalid("id", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
		return config.Invalid("health_addr", "%q is not host:port", c.HealthAddr)
	}
	if len(c.Etcd.Endpoints) == 0 {
		return config.Invalid("etcd.endpoints", "at least one etcd endpoint is required (--etcd or DRPLANE_ETCD_ENDPOINTS)")
	}
	for i, ep := range c.Etcd.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Invalid(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is not an http(s)://host:port URL", ep)
		}
	}
	if c.Etcd.DialTimeout <= 0 {
		return config.Invalid("etcd.dial_timeout", "must be positive")
	}
	if c.Etcd.LeaseTTL < 2*time.Second {
		return config.Invalid("etcd.lease_ttl", "must be at least 2s, got %s", c.Etcd.LeaseTTL)
	}
	if err := c.Etcd.TLS.Validate("etcd.tls"); err != nil {
		return config.Invalid("etcd.tls", "%v", err)
	}
	if err := c.Log.Validate(); err != nil {
		return config.Invalid("log", "%v", err)
	}
	return nil
}
