package router

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Errors. Those that are *apierr.Error carry a catalog code, so
// apierr.CodeOf and IsRetryable classify them, and an application server
// that returns one through the apierr interceptors sends its client the
// same code. Returned errors wrap these with context; test with errors.Is.
var (
	// ErrNotReady means the router has no routing table for the keyspace
	// yet (Run has not received it). Retryable; Ready says when it is over.
	ErrNotReady = apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "router: routing table not received yet")
	// ErrUnknownKeyspace means the keyspace is not one the router watches
	// (Options.Keyspaces) or, when it watches all, one the coordinator
	// does not know.
	ErrUnknownKeyspace = apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "router: unknown keyspace")
	// ErrShardFrozen means the shard refuses writes for the moment: its
	// owner is changing. Retryable after a short delay.
	ErrShardFrozen = apierr.New(drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN, "router: shard frozen")
	// ErrNoMaster means this DC owns the shard but the routing table names
	// no master for its cluster (a failover is under way, or the HA agent
	// has not registered one). Retryable.
	ErrNoMaster = apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "router: no master known")
	// ErrStale means the route stream has been down longer than
	// Options.MaxStale, so a local write could go to a shard this DC no
	// longer owns. Retryable.
	ErrStale = apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "router: routes are stale")
	// ErrClosed means Run has returned and the router's database handles
	// are closed.
	ErrClosed = errors.New("router: closed")
	// ErrNoDB means WriteDB was called on a router built without
	// Options.DB.
	ErrNoDB = errors.New("router: no Options.DB to open master handles with")
	// ErrBadTable means the coordinator sent a routing table that is not a
	// valid shard map; the router keeps the keyspace's previous table.
	ErrBadTable = errors.New("router: invalid routing table")
	// ErrRunning means Run was called a second time.
	ErrRunning = errors.New("router: Run called twice")
	// ErrOptions means New was given unusable options.
	ErrOptions = errors.New("router: invalid options")
)

// Metadata keys of the NOT_OWNER API error a *NotOwner converts to.
const (
	MetaKeyspace = "keyspace"
	MetaShard    = "shard"
	MetaOwnerDC  = "owner_dc"
)

// NotOwner is returned by WriteDB when another DC owns the key's shard. It
// carries the owner and its master so that the caller can forward the
// write there. It is not retryable in this DC: the write belongs elsewhere.
// Sent over the API (it implements GRPCStatus) it is NOT_OWNER with the
// keyspace, shard and owner DC in the ErrorInfo metadata.
type NotOwner struct {
	Keyspace string
	Shard    int
	// DC is the router's DC, which refused the write.
	DC string
	// Owner is the DC that takes the shard's writes.
	Owner string
	// Master is the owner DC's master; zero when the table names none.
	Master Master
}

func (e *NotOwner) Error() string {
	return fmt.Sprintf("router: keyspace %q shard %d is owned by %s, not %s", e.Keyspace, e.Shard, e.Owner, e.DC)
}

// APIError returns e as a NOT_OWNER catalog error.
func (e *NotOwner) APIError() *apierr.Error {
	return &apierr.Error{
		Code:    drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER,
		Message: e.Error(),
		Metadata: map[string]string{
			MetaKeyspace: e.Keyspace,
			MetaShard:    strconv.Itoa(e.Shard),
			MetaOwnerDC:  e.Owner,
		},
	}
}

// GRPCStatus makes a *NotOwner (also wrapped) a NOT_OWNER status error.
func (e *NotOwner) GRPCStatus() *status.Status { return e.APIError().GRPCStatus() }

// IsRetryable reports whether the call that failed with err may succeed if
// repeated unchanged after a short backoff in this DC: ErrNotReady,
// ErrShardFrozen, ErrNoMaster, ErrStale, and any error whose API code the
// catalog marks retryable (apierr.Retryable), except *NotOwner, whose write
// belongs in another DC. Context errors and plain database errors are not.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*NotOwner](err); ok {
		return false
	}
	e, ok := apierr.FromError(err)
	return ok && apierr.Retryable(e.Code)
}
