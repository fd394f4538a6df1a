package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/config"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

const (
	readMethod  = "/drplane.v1.TopologyService/GetStatus"
	writeMethod = "/drplane.v1.ShardService/Evacuate"
	adminToken  = "admin-token-1"
	viewerToken = "viewer-token-1"
	opToken     = "operator-token-1"
)

func newAuth(t *testing.T) *auth.Authenticator {
	t.Helper()
	a, err := auth.New([]auth.Token{
		{Name: "alice", Role: "admin", SHA256: auth.Hash(adminToken)},
		{Name: "victor", Role: "viewer", SHA256: strings.ToUpper(auth.Hash(viewerToken))},
		{Name: "olga", Role: "operator", SHA256: auth.Hash(opToken)},
	}, map[string]auth.Role{readMethod: auth.RoleViewer, writeMethod: auth.RoleOperator})
	require.NoError(t, err)
	return a
}

func withAuth(header string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
}

func requireCode(t *testing.T, err error, code drplanev1.ErrorCode, msg string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, apierr.Is(err, code), "want %s, got %v", apierr.Reason(code), err)
	if msg != "" {
		assert.Contains(t, err.Error(), msg)
	}
}

func TestHash(t *testing.T) {
	// SHA-256("abc"), a published test vector.
	assert.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", auth.Hash("abc"))
}

func TestAuthenticate(t *testing.T) {
	a := newAuth(t)
	tests := []struct {
		name string
		ctx  context.Context
		who  string
		role auth.Role
		code drplanev1.ErrorCode
		msg  string
	}{
		{name: "admin", ctx: withAuth("Bearer " + adminToken), who: "alice", role: auth.RoleAdmin},
		{name: "viewer, hash configured in upper case", ctx: withAuth("Bearer " + viewerToken), who: "victor", role: auth.RoleViewer},
		{name: "no metadata", ctx: context.Background(), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "missing bearer token"},
		{name: "no authorization header", ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-other", "1")),
			code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "missing bearer token"},
		{name: "basic scheme", ctx: withAuth("Basic " + adminToken), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "malformed Authorization header"},
		{name: "bare token", ctx: withAuth(adminToken), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "malformed Authorization header"},
		{name: "empty bearer", ctx: withAuth("Bearer "), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "malformed Authorization header"},
		{name: "unknown token", ctx: withAuth("Bearer nope"), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "unknown token"},
		{name: "the hash is not the token", ctx: withAuth("Bearer " + auth.Hash(adminToken)), code: drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg: "unknown token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(tt.ctx)
			if tt.who == "" {
				requireCode(t, err, tt.code, tt.msg)
				assert.Equal(t, codes.Unauthenticated, status.Code(apierr.ToStatus(err).Err()))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, auth.Principal{Name: tt.who, Role: tt.role}, p)
		})
	}
}

func TestAuthorize(t *testing.T) {
	a := newAuth(t)
	viewer := auth.Principal{Name: "victor", Role: auth.RoleViewer}
	operator := auth.Principal{Name: "olga", Role: auth.RoleOperator}
	admin := auth.Principal{Name: "alice", Role: auth.RoleAdmin}
	const unlisted = "/drplane.v1.KillSwitchService/Set"

	require.NoError(t, a.Authorize(viewer, readMethod))
	require.NoError(t, a.Authorize(operator, readMethod), "higher roles may do what lower ones may")
	require.NoError(t, a.Authorize(operator, writeMethod))
	require.NoError(t, a.Authorize(admin, unlisted), "methods outside the policy need admin")

	err := a.Authorize(viewer, writeMethod)
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "needs role operator")
	assert.Contains(t, err.Error(), `"victor" has role viewer`)
	assert.Equal(t, codes.PermissionDenied, status.Code(apierr.ToStatus(err).Err()))

	requireCode(t, a.Authorize(viewer, unlisted), drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "needs role admin")
	requireCode(t, a.Authorize(operator, unlisted), drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "needs role admin")
	requireCode(t, a.Authorize(auth.Principal{}, readMethod), drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
}

func TestUnaryInterceptor(t *testing.T) {
	a := newAuth(t)
	intercept := a.Unary()
	var seen auth.Principal
	called := 0
	handler := func(ctx context.Context, req any) (any, error) {
		called++
		p, ok := auth.FromContext(ctx)
		require.True(t, ok, "the handler sees the caller")
		seen = p
		return "resp", nil
	}
	info := func(m string) *grpc.UnaryServerInfo { return &grpc.UnaryServerInfo{FullMethod: m} }

	resp, err := intercept(withAuth("Bearer "+viewerToken), "req", info(readMethod), handler)
	require.NoError(t, err)
	assert.Equal(t, "resp", resp)
	assert.Equal(t, auth.Principal{Name: "victor", Role: auth.RoleViewer}, seen)

	_, err = intercept(withAuth("Bearer "+viewerToken), "req", info(writeMethod), handler)
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
	_, err = intercept(withAuth("Bearer wrong"), "req", info(readMethod), handler)
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "")
	assert.Equal(t, 1, called, "the handler never runs for a refused call")

	_, ok := auth.FromContext(context.Background())
	assert.False(t, ok)
}

// stream is a grpc.ServerStream carrying only a context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stream) Context() context.Context { return s.ctx }

func TestStreamInterceptor(t *testing.T) {
	a := newAuth(t)
	intercept := a.Stream()
	var seen auth.Principal
	handler := func(_ any, ss grpc.ServerStream) error {
		p, ok := auth.FromContext(ss.Context())
		require.True(t, ok)
		seen = p
		return nil
	}
	info := &grpc.StreamServerInfo{FullMethod: readMethod}
	require.NoError(t, intercept(nil, stream{ctx: withAuth("Bearer " + opToken)}, info, handler))
	assert.Equal(t, "olga", seen.Name)
	err := intercept(nil, stream{ctx: context.Background()}, info, handler)
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "")
}

func TestNewRejectsBadTokens(t *testing.T) {
	good := auth.Hash("t")
	tests := []struct {
		name   string
		tokens []auth.Token
		field  string
		msg    string
	}{
		{"unknown role", []auth.Token{{Name: "a", Role: "root", SHA256: good}}, "auth.tokens[0].role", `unknown role "root"`},
		{"empty role", []auth.Token{{Name: "a", SHA256: good}}, "auth.tokens[0].role", "unknown role"},
		{"short hash", []auth.Token{{Name: "a", Role: "admin", SHA256: "abcd"}}, "auth.tokens[0].sha256", "64 hex digits"},
		{"not hex", []auth.Token{{Name: "a", Role: "admin", SHA256: strings.Repeat("z", 64)}}, "auth.tokens[0].sha256", "64 hex digits"},
		{"plain token instead of hash", []auth.Token{{Name: "a", Role: "admin", SHA256: "my-secret-token"}}, "auth.tokens[0].sha256", "64 hex digits"},
		{"missing name", []auth.Token{{Role: "admin", SHA256: good}}, "auth.tokens[0].name", "required"},
		{"duplicate token", []auth.Token{{Name: "a", Role: "admin", SHA256: good}, {Name: "b", Role: "viewer", SHA256: strings.ToUpper(good)}},
			"auth.tokens[1].sha256", "duplicate token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.New(tt.tokens, nil)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, ce.Msg, tt.msg)
			require.ErrorIs(t, err, config.ErrInvalid)
		})
	}

	a, err := auth.New(nil, nil)
	require.NoError(t, err, "no tokens is valid for the authenticator (the config requires some)")
	_, err = a.Authenticate(withAuth("Bearer x"))
	requireCode(t, err, drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "")
}

func TestRoles(t *testing.T) {
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		got, err := auth.ParseRole(r.String())
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	assert.Equal(t, "none", auth.RoleNone.String())
	assert.Less(t, auth.RoleViewer, auth.RoleOperator)
	assert.Less(t, auth.RoleOperator, auth.RoleAdmin)
	_, err := auth.ParseRole("Admin")
	require.Error(t, err, "roles are case-sensitive")
}
