package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ControlSocket is the lab's control socket in its directory: a Unix
// socket (0600) on which the running lab takes DC-wide faults that need
// drlab itself, since it runs the DCs' etcd members and NATS servers.
const ControlSocket = "run/lab.sock"

// serveControl serves the control socket until ctx ends:
//
//	POST /dcs/{dc}/kill   KillDC; answers {"stopped": [...]}
//	POST /dcs/{dc}/start  StartDC
func (l *Lab) serveControl(ctx context.Context) (func(), error) {
	path := filepath.Join(l.dir, ControlSocket)
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /dcs/{dc}/kill", func(w http.ResponseWriter, r *http.Request) {
		stopped, err := l.KillDC(r.PathValue("dc"))
		if err != nil {
			controlError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string][]string{"stopped": stopped})
	})
	mux.HandleFunc("POST /dcs/{dc}/start", func(w http.ResponseWriter, r *http.Request) {
		sctx, cancel := context.WithTimeout(ctx, l.o.Config.ReadyTimeout)
		defer cancel()
		if err := l.StartDC(sctx, r.PathValue("dc")); err != nil {
			controlError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
	}, nil
}

func controlError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNoDC) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

// KillDCIn asks the lab running in dir to kill every process of dc (see
// Lab.KillDC) and returns what it stopped.
func KillDCIn(ctx context.Context, dir, dc string) ([]string, error) {
	body, err := control(ctx, dir, "/dcs/"+dc+"/kill")
	if err != nil {
		return nil, err
	}
	var out struct {
		Stopped []string `json:"stopped"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("lab control: %w", err)
	}
	return out.Stopped, nil
}

// StartDCIn asks the lab running in dir to start dc again (see
// Lab.StartDC).
func StartDCIn(ctx context.Context, dir, dc string) error {
	_, err := control(ctx, dir, "/dcs/"+dc+"/start")
	return err
}

func control(ctx context.Context, dir, path string) ([]byte, error) {
	sock := filepath.Join(dir, ControlSocket)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lab"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lab control (%s): %w", sock, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("lab control: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("lab control: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
