package docstore

import (
	"errors"
	"fmt"
)

// Errors of every Store, matched with errors.Is.
var (
	// ErrNotFound means the document or the index does not exist.
	ErrNotFound = errors.New("docstore: not found")
	// ErrBadQuery means a search was refused; the error is a *QueryError
	// with the reason.
	ErrBadQuery = errors.New("docstore: bad query")
	// ErrUnavailable means the backend could not be reached or shed load;
	// a retry later may succeed.
	ErrUnavailable = errors.New("docstore: unavailable")
	// ErrMappingConflict means EnsureIndex asked to change the type of an
	// existing field.
	ErrMappingConflict = errors.New("docstore: mapping conflict")
	// ErrRejected means one document of a Bulk call was refused (it is not
	// a JSON object, or a field does not fit its mapping).
	ErrRejected = errors.New("docstore: document rejected")
	// ErrInvalid means an argument other than a query is malformed (an
	// index name, a mapping, an empty id).
	ErrInvalid = errors.New("docstore: invalid argument")
)

// QueryError is the error of a refused search; it matches ErrBadQuery.
type QueryError struct {
	// Reason says what is wrong, in the backend's words.
	Reason string
}

func (e *QueryError) Error() string { return ErrBadQuery.Error() + ": " + e.Reason }

// Is reports whether target is ErrBadQuery.
func (e *QueryError) Is(target error) bool { return target == ErrBadQuery }

// BadQueryf returns a *QueryError with a formatted reason.
func BadQueryf(format string, args ...any) error {
	return &QueryError{Reason: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
