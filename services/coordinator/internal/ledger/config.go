package ledger

import (
	"time"

	"github.com/drplane/drplane/pkg/config"
	"github.com/drplane/drplane/pkg/docstore"
)

// Defaults of Config.
const (
	DefaultIndex          = "drplane-ledger"
	DefaultRetryAfter     = 30 * time.Second
	DefaultReconcileEvery = 10 * time.Second
	DefaultMaxPerRound    = 500
	DefaultMaxAttempts    = 10
)

// Config is the coordinator's ledger section. The ledger lives in the
// coordinator's document store (the audit store).
type Config struct {
	// Index is the ledger index.
	Index string `yaml:"index"`
	// RetryAfter is how long after its capture (or its last retry) a
	// request not applied in every target is republished.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ReconcileEvery is how often the reconciler looks for such requests.
	ReconcileEvery time.Duration `yaml:"reconcile_every"`
	// MaxPerRound bounds the requests one reconciler round republishes.
	MaxPerRound int `yaml:"max_per_round"`
	// MaxAttempts is how often one request is retried at most; after that
	// it stays in the backlog for an operator.
	MaxAttempts int `yaml:"max_attempts"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Index: DefaultIndex, RetryAfter: DefaultRetryAfter, ReconcileEvery: DefaultReconcileEvery,
		MaxPerRound: DefaultMaxPerRound, MaxAttempts: DefaultMaxAttempts,
	}
}

// Validate checks the section; errors name fields under prefix (the
// section's YAML path, "ledger").
func (c Config) Validate(prefix string) error {
	f := func(name string) string { return prefix + "." + name }
	if err := docstore.ValidateIndexName(c.Index); err != nil {
		return config.Invalid(f("index"), "%v", err)
	}
	switch {
	case c.RetryAfter < time.Second || c.RetryAfter > 24*time.Hour:
		return config.Invalid(f("retry_after"), "%s out of range 1s-24h", c.RetryAfter)
	case c.ReconcileEvery < 100*time.Millisecond || c.ReconcileEvery > time.Hour:
		return config.Invalid(f("reconcile_every"), "%s out of range 100ms-1h", c.ReconcileEvery)
	case c.MaxPerRound < 1 || c.MaxPerRound > maxPerRoundLimit:
		return config.Invalid(f("max_per_round"), "%d out of range 1-%d", c.MaxPerRound, maxPerRoundLimit)
	case c.MaxAttempts < 1 || c.MaxAttempts > 1000:
		return config.Invalid(f("max_attempts"), "%d out of range 1-1000", c.MaxAttempts)
	}
	return nil
}

// maxPerRoundLimit is the most a round may take: one search page.
const maxPerRoundLimit = docstore.MaxSize
