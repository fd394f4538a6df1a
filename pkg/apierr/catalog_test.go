package apierr_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func TestGRPCCodeCoversCatalog(t *testing.T) {
	// The expected mapping, written out so that a new enum value without a
	// row here fails.
	wantGRPC := map[drplanev1.ErrorCode]struct {
		code      codes.Code
		retryable bool
	}{
		drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED:         {codes.Internal, false},
		drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:    {codes.InvalidArgument, false},
		drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND:           {codes.NotFound, false},
		drplanev1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:      {codes.AlreadyExists, false},
		drplanev1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION: {codes.FailedPrecondition, false},
		drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:     {codes.Unauthenticated, false},
		drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:   {codes.PermissionDenied, false},
		drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE:         {codes.Unavailable, true},
		drplanev1.ErrorCode_ERROR_CODE_CONFLICT:            {codes.Aborted, true},
		drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN:        {codes.Unavailable, true},
		drplanev1.ErrorCode_ERROR_CODE_NOT_OWNER:           {codes.FailedPrecondition, true},
		drplanev1.ErrorCode_ERROR_CODE_NOT_LEADER:          {codes.Unavailable, true},
		drplanev1.ErrorCode_ERROR_CODE_KILL_SWITCH_ENGAGED: {codes.FailedPrecondition, false},
		drplanev1.ErrorCode_ERROR_CODE_INTERNAL:            {codes.Internal, false},
		drplanev1.ErrorCode_ERROR_CODE_DEADLINE_EXCEEDED:   {codes.DeadlineExceeded, false},
		drplanev1.ErrorCode_ERROR_CODE_CANCELED:            {codes.Canceled, false},
		drplanev1.ErrorCode_ERROR_CODE_UNIMPLEMENTED:       {codes.Unimplemented, false},
		drplanev1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED:  {codes.ResourceExhausted, true},
	}
	require.Len(t, wantGRPC, len(drplanev1.ErrorCode_name), "every ErrorCode needs a row in wantGRPC")
	for v, name := range drplanev1.ErrorCode_name {
		code := drplanev1.ErrorCode(v)
		t.Run(name, func(t *testing.T) {
			want, ok := wantGRPC[code]
			require.True(t, ok, "no expected mapping for %s", name)
			assert.Equal(t, want.code, apierr.GRPCCode(code))
			assert.Equal(t, want.retryable, apierr.Retryable(code))

			// The status of every code carries a reason that maps back.
			s := apierr.ToStatus(apierr.New(code, ""))
			assert.NotEmpty(t, s.Message(), "catalog has no default message for %s", name)
			e, ok := apierr.FromError(s.Err())
			require.True(t, ok)
			if code == drplanev1.ErrorCode_ERROR_CODE_UNSPECIFIED {
				assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, e.Code)
				return
			}
			assert.Equal(t, code, e.Code)
		})
	}
}

func TestOutOfCatalogCode(t *testing.T) {
	unknown := drplanev1.ErrorCode(9999)
	assert.Equal(t, codes.Internal, apierr.GRPCCode(unknown))
	assert.False(t, apierr.Retryable(unknown))
	s := apierr.ToStatus(apierr.New(unknown, "odd"))
	assert.Equal(t, codes.Internal, s.Code())
	assert.Equal(t, "odd", s.Message())
	assert.Equal(t, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, apierr.CodeOf(s.Err()))
}

func TestReason(t *testing.T) {
	tests := []struct {
		code   drplanev1.ErrorCode
		reason string
	}{
		{drplanev1.ErrorCode_ERROR_CODE_SHARD_FROZEN, "SHARD_FROZEN"},
		{drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
		{drplanev1.ErrorCode_ERROR_CODE_KILL_SWITCH_ENGAGED, "KILL_SWITCH_ENGAGED"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.reason, apierr.Reason(tt.code))
		got, ok := apierr.CodeFromReason(tt.reason)
		assert.True(t, ok)
		assert.Equal(t, tt.code, got)
	}
	for _, bad := range []string{"", "NOPE", "ERROR_CODE_NOT_FOUND", "shard_frozen"} {
		_, ok := apierr.CodeFromReason(bad)
		assert.False(t, ok, "reason %q", bad)
	}
}
