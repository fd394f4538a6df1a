package embednats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultLedgerMaxAge is how long a ledger stream keeps its facts when StreamOptions.MaxAge is zero.
const DefaultLedgerMaxAge = 7 * 24 * time.Hour

// DLQStream names dc's dead-letter stream, which captures DLQSubject(dc)+".>".
func DLQStream(dc string) string { return "DLQ_" + StreamToken(dc) }

// DLQSubject is the subject prefix of dc's dead letters: the collector publishes a poison event from
// origin to DLQSubject(dc)+"."+origin.
func DLQSubject(dc string) string { return "drplane.dlq." + dc }

// LedgerStream names dc's ledger stream, which captures LedgerSubject(dc)+".>".
func LedgerStream(dc string) string { return "LEDGER_" + StreamToken(dc) }

// LedgerSubject is the subject prefix of the ledger facts dc's services report (LedgerSubject(dc)+
// ".captured", ".applied", ".dead_lettered").
func LedgerSubject(dc string) string { return "drplane.ledger." + dc }

// ReplaySubject is the subject prefix under which messages are put back into dc's inbound stream by
// drplane itself (a retried dead letter, the collector's duplicate-delivery test hook), once
// EnsureInboundReplay has added it to the stream: publish to ReplaySubject(dc)+"."+origin.
func ReplaySubject(dc string) string { return "drplane.replay." + dc }

// EnsureDLQ creates dc's dead-letter stream through js, a JetStream context on dc's own server, or adds
// its subjects to the stream if it exists with others. Dead letters are kept until removed: opts.MaxAge
// and opts.MaxBytes limit the stream only when set.
func EnsureDLQ(ctx context.Context, js jetstream.JetStream, dc string, opts StreamOptions) error {
	if !ValidDC(dc) {
		return fmt.Errorf("%w: DC name %q", ErrStreams, dc)
	}
	return ensureCapture(ctx, js, jetstream.StreamConfig{
		Name:        DLQStream(dc),
		Description: "events " + dc + "'s collector could not apply",
		Subjects:    []string{DLQSubject(dc) + ".>"},
		Storage:     opts.Storage,
		MaxAge:      opts.MaxAge,
		MaxBytes:    maxBytes(opts.MaxBytes),
		Duplicates:  opts.Duplicates,
	})
}

// EnsureLedger creates dc's ledger stream through js, a JetStream context on dc's own server. Several
// services of a DC call it (reship, collector): a stream that already exists keeps its configuration,
// and only the ledger subjects are added if they are missing, so concurrent and repeated calls agree.
// The stream keeps facts for opts.MaxAge (DefaultLedgerMaxAge when zero).
func EnsureLedger(ctx context.Context, js jetstream.JetStream, dc string, opts StreamOptions) error {
	if !ValidDC(dc) {
		return fmt.Errorf("%w: DC name %q", ErrStreams, dc)
	}
	age := opts.MaxAge
	if age == 0 {
		age = DefaultLedgerMaxAge
	}
	return ensureCapture(ctx, js, jetstream.StreamConfig{
		Name:        LedgerStream(dc),
		Description: "request ledger facts reported in " + dc,
		Subjects:    []string{LedgerSubject(dc) + ".>"},
		Storage:     opts.Storage,
		MaxAge:      age,
		MaxBytes:    maxBytes(opts.MaxBytes),
		Duplicates:  opts.Duplicates,
	})
}

// EnsureInboundReplay adds ReplaySubject(dc)+".>" to dc's inbound stream, which must exist (see
// EnsureInbound; call this again after every EnsureInbound, which sets the stream's subjects to none).
// Messages published there are stored in the inbound stream next to the sourced ones.
func EnsureInboundReplay(ctx context.Context, js jetstream.JetStream, dc string) error {
	if !ValidDC(dc) {
		return fmt.Errorf("%w: DC name %q", ErrStreams, dc)
	}
	s, err := js.Stream(ctx, InStream(dc))
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrStreams, InStream(dc), err)
	}
	return addSubjects(ctx, js, s.CachedInfo().Config, ReplaySubject(dc)+".>")
}

// ensureCapture creates the stream cfg describes or, when it exists, adds cfg's subjects to it and
// leaves the rest of its configuration alone. A stream created concurrently by another caller is
// treated as existing.
func ensureCapture(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	for range 3 {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case err == nil:
			return addSubjects(ctx, js, s.CachedInfo().Config, cfg.Subjects...)
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("%w: stream %s: %w", ErrStreams, cfg.Name, err)
		}
		_, err = js.CreateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("%w: create stream %s: %w", ErrStreams, cfg.Name, err)
		}
	}
	return fmt.Errorf("%w: stream %s: created and removed concurrently", ErrStreams, cfg.Name)
}

// addSubjects updates the stream whose configuration is cur so that it captures subjects too: a subject
// that one of the stream's subjects already covers is skipped, and the stream's subjects that a new one
// covers are replaced by it (a stream must not list overlapping subjects).
func addSubjects(ctx context.Context, js jetstream.JetStream, cur jetstream.StreamConfig, subjects ...string) error {
	changed := false
	for _, s := range subjects {
		if slices.ContainsFunc(cur.Subjects, func(have string) bool { return covers(have, s) }) {
			continue
		}
		cur.Subjects = append(slices.DeleteFunc(cur.Subjects, func(have string) bool { return covers(s, have) }), s)
		changed = true
	}
	if !changed {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cur); err != nil {
		return fmt.Errorf("%w: add subjects %v to stream %s: %w", ErrStreams, subjects, cur.Name, err)
	}
	return nil
}

// covers reports whether every subject that sub matches is matched by pattern ('*' is one token, '>' the
// rest).
func covers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return i < len(s)
		case i >= len(s):
			return false
		case tok == "*":
			if s[i] == ">" {
				return false
			}
		case tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
