// Package e2e holds end-to-end tests that run drplane's real binaries
// against a real lab. Nothing imports it.
package e2e
