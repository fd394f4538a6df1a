// Package config loads typed configuration from defaults, a YAML file,
// environment variables and command-line flags (in rising precedence),
// validates it, and prints it with secrets redacted for --check-config.
package config
