package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const secret = "password=hunter2 at 10.0.0.7:3306"

func errorInfo(t *testing.T, s *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("status %v has no ErrorInfo", s)
	return nil
}

func TestToStatus(t *testing.T) {
	forwarded := apierr.ToStatus(apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_LEADER, "leader is dc-b1").
		WithMetadata("leader", "10.0.0.1:7000")).Err()

	tests := []struct {
		name     string
		err      error
		code     codes.Code
		reason   string
		message  string
		metadata map[string]string
	}{
		{
			name:     "invalid argument with field",
			err:      apierr.InvalidArgument("dc", `unknown DC "dc-x"`),
			code:     codes.InvalidArgument,
			reason:   "INVALID_ARGUMENT",
			message:  `unknown DC "dc-x"`,
			metadata: map[string]string{"field": "dc"},
		},
		{
			name:    "wrapped api error hides its cause",
			err:     fmt.Errorf("handler: %w", apierr.Wrap(errors.New(secret), drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "etcd unavailable")),
			code:    codes.Unavailable,
			reason:  "UNAVAILABLE",
			message: "etcd unavailable",
		},
		{
			name:     "metadata and field",
			err:      apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, "shard 7 is owned by dc-b1").WithMetadata("owner_dc", "dc-b1"),
			code:     codes.FailedPrecondition,
			reason:   "NOT_OWNER",
			message:  "shard 7 is owned by dc-b1",
			metadata: map[string]string{"owner_dc": "dc-b1"},
		},
		{
			name:    "default message",
			err:     apierr.New(drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN, ""),
			code:    codes.Unavailable,
			reason:  "SHARD_FROZEN",
			message: "shard frozen",
		},
		{
			name:    "not found helper",
			err:     apierr.NotFound("cluster", "dc-a1/db"),
			code:    codes.NotFound,
			reason:  "NOT_FOUND",
			message: `cluster "dc-a1/db" not found`,
		},
		{
			name:    "unspecified becomes internal",
			err:     apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED, "oops"),
			code:    codes.Internal,
			reason:  "INTERNAL",
			message: "oops",
		},
		{
			name:    "unknown error does not leak",
			err:     fmt.Errorf("query failed: %s", secret),
			code:    codes.Internal,
			reason:  "INTERNAL",
			message: "internal error",
		},
		{
			name:    "deadline",
			err:     fmt.Errorf("wait for quorum: %w", context.DeadlineExceeded),
			code:    codes.DeadlineExceeded,
			reason:  "DEADLINE_EXCEEDED",
			message: "deadline exceeded",
		},
		{
			name:    "canceled",
			err:     context.Canceled,
			code:    codes.Canceled,
			reason:  "CANCELED",
			message: "canceled",
		},
		{
			name:    "foreign status is mapped, message dropped",
			err:     status.Error(codes.Unavailable, "etcdserver: "+secret),
			code:    codes.Unavailable,
			reason:  "UNAVAILABLE",
			message: "unavailable",
		},
		{
			name:    "foreign aborted is a conflict",
			err:     status.Error(codes.Aborted, secret),
			code:    codes.Aborted,
			reason:  "CONFLICT",
			message: "conflict",
		},
		{
			name:     "forwarded drplane status passes through",
			err:      forwarded,
			code:     codes.Unavailable,
			reason:   "NOT_LEADER",
			message:  "leader is dc-b1",
			metadata: map[string]string{"leader": "10.0.0.1:7000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := apierr.ToStatus(tt.err)
			require.NotNil(t, s)
			assert.Equal(t, tt.code, s.Code())
			assert.Equal(t, tt.message, s.Message())
			assert.NotContains(t, s.Message(), "hunter2")
			info := errorInfo(t, s)
			assert.Equal(t, apierr.Domain, info.GetDomain())
			assert.Equal(t, tt.reason, info.GetReason())
			if tt.metadata == nil {
				assert.Empty(t, info.GetMetadata())
			} else {
				assert.Equal(t, tt.metadata, info.GetMetadata())
			}
		})
	}
	assert.Nil(t, apierr.ToStatus(nil))
}

func TestFromError(t *testing.T) {
	apiErr := apierr.InvalidArgument("keyspace", "must not be empty")
	tests := []struct {
		name  string
		err   error
		ok    bool
		code  drplanev1.ErrorCode
		msg   string
		field string
	}{
		{name: "nil", err: nil},
		{name: "plain error", err: errors.New("x")},
		{name: "api error", err: apiErr, ok: true, code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, msg: "must not be empty", field: "keyspace"},
		{name: "wrapped api error", err: fmt.Errorf("ctx: %w", apiErr), ok: true, code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, msg: "must not be empty", field: "keyspace"},
		{name: "status with info", err: apierr.ToStatus(apiErr).Err(), ok: true, code: drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, msg: "must not be empty", field: "keyspace"},
		{name: "status without info", err: status.Error(codes.Unavailable, "connection refused"), ok: true, code: drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, msg: "connection refused"},
		{name: "unimplemented", err: status.Error(codes.Unimplemented, "unknown method"), ok: true, code: drplanev1.ErrorCode_ERROR_CODE_INTERNAL, msg: "unknown method"},
		{name: "deadline", err: context.DeadlineExceeded, ok: true, code: drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED, msg: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := apierr.FromError(tt.err)
			require.Equal(t, tt.ok, ok)
			if !ok {
				assert.Nil(t, e)
				return
			}
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, tt.msg, e.Message)
			assert.Equal(t, tt.field, e.Field)
			assert.Equal(t, tt.code, apierr.CodeOf(tt.err))
			assert.True(t, apierr.Is(tt.err, tt.code))
		})
	}
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED, apierr.CodeOf(nil))
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, apierr.CodeOf(errors.New("x")))
}

func TestErrorString(t *testing.T) {
	cause := errors.New("etcdserver: no leader")
	err := apierr.Wrap(cause, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cannot read shard map")
	assert.Equal(t, "UNAVAILABLE: cannot read shard map: etcdserver: no leader", err.Error())
	assert.ErrorIs(t, err, cause)
	assert.Equal(t, `INVALID_ARGUMENT: dc: unknown DC "x"`, apierr.InvalidArgument("dc", `unknown DC "x"`).Error())

	// Through GRPCStatus, grpc's own helpers see the catalog code.
	assert.Equal(t, codes.Unavailable, status.Code(fmt.Errorf("wrap: %w", err)))
}

func TestWithMetadataCopies(t *testing.T) {
	base := apierr.New(drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER, "moved").WithMetadata("owner_dc", "dc-a1")
	other := base.WithMetadata("owner_dc", "dc-b1")
	assert.Equal(t, "dc-a1", base.Metadata["owner_dc"])
	assert.Equal(t, "dc-b1", other.Metadata["owner_dc"])
}
