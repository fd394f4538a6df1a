package apply

import (
	"errors"

	"github.com/go-sql-driver/mysql"
)

// transientNumber reports whether a MySQL error number clears up by
// itself: retry, never dead-letter.
func transientNumber(n uint16) bool {
	switch n {
	case 1040, // too many connections
		1044, 1045, 1142, 4151, // access denied, account locked: a grant or account being repaired, never the event's fault
		1053,       // server shutdown in progress
		1205, 1213, // lock wait timeout, deadlock
		1290, 1792, 1836, // read-only (failover or fencing in progress)
		1317, 1927, 1969: // query interrupted, connection killed, statement timeout
		return true
	}
	return false
}

// errTransient marks errors of the apply path itself that are worth a
// retry (a dedup row raced in by another writer).
var errTransient = errors.New("apply: transient")

// transient reports whether err is worth retrying as it is: every error
// that is not a MySQL server error (the connection, a timeout, no master
// known yet) and the server errors listed above. Everything else — an
// unknown table or column, a constraint violation, a bad value, an
// invalid event — is the request's own and is isolated.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUndecodable) || errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrUnknownKeyspace) {
		return false
	}
	if errors.Is(err, errTransient) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return transientNumber(me.Number)
	}
	return true
}

// hopeless reports whether retrying err can never help: the event itself
// is malformed.
func hopeless(err error) bool {
	return errors.Is(err, ErrUndecodable) || errors.Is(err, ErrInvalidEvent)
}
