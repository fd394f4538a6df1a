// Package ui serves the web dashboard at /ui on the coordinator's HTTP port:
// static assets embedded in the binary (no CDN, works offline), the session
// call that tells the page who its token belongs to, and a server-sent event
// stream of what changed in etcd. Every data call of the page goes through
// the REST API with the same bearer token, so the dashboard sees only what
// the token's role may see; the two endpoints here authenticate it too.
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/metadata"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/state"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

//go:embed static
var assets embed.FS

// Options configure the dashboard.
type Options struct {
	// Auth authenticates the bearer token of the session and event calls.
	Auth *auth.Authenticator
	// Store is watched for the event stream.
	Store *state.Store
	// Admit, when non-nil, runs first for the session and event calls:
	// an error answers the call at once (a throttled caller), as for the
	// REST API.
	Admit func(r *http.Request) error
	// Refused, when non-nil, is told of every call refused as
	// UNAUTHENTICATED (to audit it and charge the caller), as the REST API
	// does.
	Refused func(r *http.Request, err error)
	// OpenStream, when non-nil, admits one event stream of the caller
	// (bounding the streams one caller holds open); release is called when
	// it ends.
	OpenStream func(r *http.Request) (release func(), err error)
	Logger     zerolog.Logger
}

// Handler serves /ui and everything under it.
type Handler struct {
	o      Options
	static http.Handler
	gw     *runtime.ServeMux
	mux    *http.ServeMux
}

// New returns the dashboard handler.
func New(o Options) *Handler {
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	h := &Handler{o: o, static: http.StripPrefix(Prefix, http.FileServerFS(sub)), gw: runtime.NewServeMux(), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	h.mux.HandleFunc("GET /ui/api/session", h.authenticated(h.session))
	h.mux.HandleFunc("GET /ui/api/events", h.authenticated(h.events))
	h.mux.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		h.authenticated(func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
			http.NotFound(w, r)
		})(w, r)
	})
	h.mux.HandleFunc("/ui/", h.serveStatic)
	return h
}

// ServeHTTP serves the dashboard.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// Everything the page loads comes from this origin; no inline script,
	// no framing.
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// No directory listings: only the page and its files.
	if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != Prefix {
		http.NotFound(w, r)
		return
	}
	// The assets change with the binary: revalidate on every load.
	w.Header().Set("Cache-Control", "no-cache")
	if strings.HasSuffix(r.URL.Path, ".js") {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	h.static.ServeHTTP(w, r)
}

// authenticated runs next for a caller with a known bearer token and
// answers UNAUTHENTICATED otherwise, rendered as the REST API renders it.
func (h *Handler) authenticated(next func(http.ResponseWriter, *http.Request, auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.o.Admit != nil {
			if err := h.o.Admit(r); err != nil {
				h.renderError(r.Context(), w, r, err)
				return
			}
		}
		md := metadata.MD{}
		if v := r.Header.Get("Authorization"); v != "" {
			md.Set("authorization", v)
		}
		p, err := h.o.Auth.Authenticate(metadata.NewIncomingContext(r.Context(), md))
		if err != nil {
			if h.o.Refused != nil {
				h.o.Refused(r, err)
			}
			h.renderError(r.Context(), w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next(w, r, p)
	}
}

func (h *Handler) renderError(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	runtime.DefaultHTTPErrorHandler(ctx, h.gw, &runtime.JSONPb{}, w, r, apierr.ToStatus(err).Err())
}

// Session is the answer of /ui/api/session: who the token belongs to and
// what its role may do.
type Session struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func (h *Handler) session(w http.ResponseWriter, _ *http.Request, p auth.Principal) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Session{Name: p.Name, Role: p.Role.String()})
}
