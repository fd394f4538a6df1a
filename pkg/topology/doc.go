// Package topology is the model of what drplane manages: cities, data centers
// (DCs), MySQL clusters and their instances, and the keyspaces whose shards
// are owned by DCs. It validates a whole topology at once and names the
// offending field in every error.
package topology
