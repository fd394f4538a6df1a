// Package auth authenticates API callers by bearer token and authorizes
// them by role (viewer < operator < admin). Tokens are configured by their
// SHA-256 hash only; the plain token never reaches the coordinator's
// configuration or logs.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/config"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Role orders privileges: each role may do everything the lower ones may.
type Role int

// Roles.
const (
	RoleNone Role = iota
	// RoleViewer reads.
	RoleViewer
	// RoleOperator also runs switchovers and evacuations.
	RoleOperator
	// RoleAdmin also changes configuration and kill switches.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
}

// Token is one configured API token.
type Token struct {
	// Name identifies the token's holder in audit records.
	Name string `yaml:"name"`
	Role string `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256 string `yaml:"sha256"`
}

// Hash returns the hex SHA-256 of a token, as configured in Token.SHA256.
func Hash(token string) string { return config.Secret(token).SHA256() }

// Principal is an authenticated caller.
type Principal struct {
	Name string
	Role Role
}

type principalKey struct{}

// FromContext returns the caller of a request.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Authenticator checks tokens and roles.
type Authenticator struct {
	byHash map[string]Principal
	policy map[string]Role
}

// New validates the tokens and returns an authenticator. policy maps full
// gRPC method names to the least role allowed to call them; methods not in
// it need RoleAdmin.
func New(tokens []Token, policy map[string]Role) (*Authenticator, error) {
	a := &Authenticator{byHash: map[string]Principal{}, policy: policy}
	for i, t := range tokens {
		field := fmt.Sprintf("auth.tokens[%d]", i)
		r, err := ParseRole(t.Role)
		if err != nil {
			return nil, config.Invalid(field+".role", "%v", err)
		}
		h := strings.ToLower(t.SHA256)
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, config.Invalid(field+".sha256", "must be 64 hex digits (the SHA-256 of the token)")
		}
		if t.Name == "" {
			return nil, config.Invalid(field+".name", "required")
		}
		if _, dup := a.byHash[h]; dup {
			return nil, config.Invalid(field+".sha256", "duplicate token")
		}
		a.byHash[h] = Principal{Name: t.Name, Role: r}
	}
	return a, nil
}

// Authenticate finds the caller from the request's bearer token.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Principal{}, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "missing bearer token (Authorization: Bearer <token>)")
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || tok == "" {
		return Principal{}, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "malformed Authorization header: want \"Bearer <token>\"")
	}
	p, ok := a.byHash[Hash(tok)]
	if !ok {
		return Principal{}, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "unknown token")
	}
	return p, nil
}

// Authorize checks that p may call method.
func (a *Authenticator) Authorize(p Principal, method string) error {
	need, ok := a.policy[method]
	if !ok {
		need = RoleAdmin
	}
	if p.Role < need {
		return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "%s needs role %s; token %q has role %s", method, need, p.Name, p.Role)
	}
	return nil
}

func (a *Authenticator) check(ctx context.Context, method string) (context.Context, error) {
	p, err := a.Authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	if err := a.Authorize(p, method); err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// Unary is the unary server interceptor.
func (a *Authenticator) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := a.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrapped) Context() context.Context { return w.ctx }

// Stream is the stream server interceptor.
func (a *Authenticator) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := a.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, wrapped{ss, ctx})
	}
}
