// Package logging builds the zerolog loggers every drplane process uses:
// JSON lines in production, a human console format in the lab.
package logging

import (
	"fmt"
	"io"

	"github.com/rs/zerolog"
)

// Options selects level and format.
type Options struct {
	// Level is trace, debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json (default) or console.
	Format string `yaml:"format"`
}

// Validate checks level and format.
func (o Options) Validate() error {
	if _, err := zerolog.ParseLevel(o.Level); err != nil || o.Level == "" {
		return fmt.Errorf("log.level: unknown level %q (want trace, debug, info, warn or error)", o.Level)
	}
	if o.Format != "json" && o.Format != "console" {
		return fmt.Errorf("log.format: unknown format %q (want json or console)", o.Format)
	}
	return nil
}

// New returns a logger writing to w. Fields names the process (service,
// dc, id) on every line.
func New(w io.Writer, o Options, fields map[string]string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(o.Level)
	if err != nil || o.Level == "" {
		lvl = zerolog.InfoLevel
	}
	if o.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	ctx := zerolog.New(w).Level(lvl).With().Timestamp()
	for k, v := range fields {
		if v != "" {
			ctx = ctx.Str(k, v)
		}
	}
	return ctx.Logger()
}
