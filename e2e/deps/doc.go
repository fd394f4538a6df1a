// Package deps holds the workspace's structural tests: which packages may
// depend on which (services → pkg → proto, nothing on e2e, haagent never on
// the Elasticsearch client), and that every package has a doc comment. It
// has no code of its own.
package deps
