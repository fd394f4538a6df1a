package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/drplane/drplane/pkg/labfile"
)

// StartFunc starts a lab in the foreground: it calls ready with the lab's
// file once the lab is up and returns after ctx ends and the lab stopped.
type StartFunc func(ctx context.Context, ready func(*labfile.Lab)) error

// OnLab runs fn against the lab in dir: the one running there (unless
// fresh), or else a new one it starts with start and stops once fn
// returned. With fresh, a lab running in dir is an error (start refuses it).
func OnLab(ctx context.Context, dir string, fresh bool, start StartFunc, fn func(*labfile.Lab) error) error {
	if l, err := labfile.Read(filepath.Join(dir, labfile.FileName)); err == nil && !fresh && processAlive(l.Drlab.Pid) {
		return fn(l)
	}
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	up := make(chan *labfile.Lab, 1)
	done := make(chan error, 1)
	go func() { done <- start(lctx, func(l *labfile.Lab) { up <- l }) }()
	select {
	case l := <-up:
		ferr := fn(l)
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return errors.Join(ferr, fmt.Errorf("drill: stopping the lab: %w", err))
		}
		return ferr
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("drill: the lab did not start: %w", err)
	}
}

func processAlive(pid int) bool {
	return pid > 1 && pid != os.Getpid() && syscall.Kill(pid, 0) == nil
}
