package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/retry"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// watchRetryFor is how long follow keeps trying to watch again while the
// API cannot be reached (the coordinator drctl talks to restarting): the
// operation lives in etcd, and any coordinator, leader or not, serves the
// watch, so a leader change does not break it.
const watchRetryFor = 60 * time.Second

// operationEnded is the outcome of a followed operation that did not
// succeed: its exit code and the line that says so.
type operationEnded struct {
	code int
	line string
}

func (e operationEnded) Error() string { return e.line }

// follow watches operation id until it is finished, reporting progress
// as it comes, and returns nil when it succeeded, operationEnded when it
// failed or was canceled.
func (a *app) follow(ctx context.Context, c drplanev1.EvacuationServiceClient, id string) error {
	p := a.newProgress()
	var last *drplanev1.Operation
	seen := map[handoffKey]bool{}
	backoff := retry.New(200*time.Millisecond, 2*time.Second)
	var failingSince time.Time
	for {
		err := a.watchOnce(ctx, c, id, func(resp *drplanev1.WatchOperationResponse) {
			failingSince = time.Time{}
			backoff.Reset()
			last = resp.GetOperation()
			var fresh []*drplanev1.Handoff
			for _, h := range resp.GetDone() {
				// A watch started again sends every finished handoff once more.
				if k := keyOf(h); !seen[k] {
					seen[k] = true
					fresh = append(fresh, h)
				}
			}
			p.update(last, fresh)
		})
		if err == nil && last != nil && !unfinished(last.GetState()) {
			break
		}
		if ctx.Err() != nil {
			p.stop()
			return fmt.Errorf("stopped following; operation %s goes on (drctl operations watch %s)", id, id)
		}
		if err != nil && !transient(err) {
			p.stop()
			return err
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > watchRetryFor {
			p.stop()
			return fmt.Errorf("lost the operation's watch for %s; operation %s goes on (drctl operations watch %s): %w", watchRetryFor, id, id, err)
		}
		if !backoff.Wait(ctx) {
			continue // reported at the top of the loop
		}
	}
	p.finish(last)
	return endedError(last)
}

// watchOnce runs one WatchOperation stream to its end, calling fn for
// every message. It returns nil when the server ended the stream.
func (a *app) watchOnce(ctx context.Context, c drplanev1.EvacuationServiceClient, id string, fn func(*drplanev1.WatchOperationResponse)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchOperation(ctx, &drplanev1.WatchOperationRequest{Id: id})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(resp)
	}
}

// transient reports whether a watch error means "try again": the API
// could not be reached, or the stream broke, rather than an answer such as
// NOT_FOUND or PERMISSION_DENIED.
func transient(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	if apierr.FromServer(s) {
		return apierr.Retryable(apierr.CodeOf(err))
	}
	return s.Code() == codes.Unavailable || s.Code() == codes.Canceled || s.Code() == codes.DeadlineExceeded
}

// endedError maps a finished operation's state to the command's result.
func endedError(op *drplanev1.Operation) error {
	switch op.GetState() {
	case drplanev1.OperationState_OPERATION_STATE_SUCCEEDED:
		return nil
	case drplanev1.OperationState_OPERATION_STATE_CANCELED:
		return operationEnded{code: exitCanceled, line: fmt.Sprintf("drctl: operation %s was canceled", op.GetId())}
	}
	return operationEnded{code: exitFailure, line: fmt.Sprintf("drctl: operation %s %s: %s (drctl operations resume %s goes on)",
		op.GetId(), opState(op.GetState()), orDash(cell(op.GetError())), op.GetId())}
}

func unfinished(s drplanev1.OperationState) bool {
	switch s {
	case drplanev1.OperationState_OPERATION_STATE_PENDING, drplanev1.OperationState_OPERATION_STATE_RUNNING,
		drplanev1.OperationState_OPERATION_STATE_CANCELING, drplanev1.OperationState_OPERATION_STATE_UNSPECIFIED:
		return true
	}
	return false
}

// handoffKey names one handoff of an operation. A resumed shard may finish
// a second time (aborted, then moved), so the state is part of the key.
type handoffKey struct {
	keyspace string
	shard    int32
	wave     int32
	state    drplanev1.HandoffState
}

func keyOf(h *drplanev1.Handoff) handoffKey {
	return handoffKey{keyspace: h.GetKeyspace(), shard: h.GetShard(), wave: h.GetWave(), state: h.GetState()}
}

// progress reports a followed operation.
type progress interface {
	// update gets the operation as it is now and the handoffs finished
	// since the previous call.
	update(op *drplanev1.Operation, done []*drplanev1.Handoff)
	// finish reports the finished operation.
	finish(op *drplanev1.Operation)
	// stop ends the report early (the watch was given up).
	stop()
}

// newProgress picks the report: JSON lines with -o json, a progress bar
// when stdout is a terminal, plain lines otherwise.
func (a *app) newProgress() progress {
	switch {
	case a.output == outputJSON:
		return &jsonProgress{out: a.stdout, errw: a.stderr}
	case a.isTerminal(a.stdout):
		return newBarProgress(a.stdout)
	}
	return &lineProgress{out: a.stdout}
}

// isTerminal reports whether w is a terminal; tests replace it.
func (a *app) isTerminal(w io.Writer) bool {
	if a.terminal != nil {
		return a.terminal(w)
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) //nolint:gosec // a file descriptor fits an int
}
