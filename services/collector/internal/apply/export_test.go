package apply

// SetAfterCommit installs the hook that runs after each batch's commit and
// before its acks; an error stops Run as a crash would.
func SetAfterCommit(a *Applier, f func() error) { a.afterCommit = f }

// DedupDDL is the statement that creates db's dedup table.
func DedupDDL(db string) string { return dedupDDL(db) }
