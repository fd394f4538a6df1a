// Package storetest is the contract suite of docstore.Store: every backend
// runs Run against a fresh store per case. The case names (subtests of Run)
// are stable, so a backend that replays recorded traffic can pick its
// recording by t.Name() inside open, and skip the cases it has none for.
package storetest
