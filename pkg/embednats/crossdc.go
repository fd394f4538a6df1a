package embednats

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStreams is wrapped by the errors of the stream set-up functions.
var ErrStreams = errors.New("embednats: cross-DC streams")

// sourceHeartbeat is the idle heartbeat the server requires of a durable sourcing consumer.
const sourceHeartbeat = time.Second

// StreamToken turns a DC name into the form used inside stream and consumer names (dashes → underscores).
func StreamToken(dc string) string { return strings.ReplaceAll(dc, "-", "_") }

// OutStream names dc's outbound stream, which captures OutSubject(dc)+".>".
func OutStream(dc string) string { return "OUT_" + StreamToken(dc) }

// InStream names dc's inbound stream, which sources every other DC's outbound stream.
func InStream(dc string) string { return "IN_" + StreamToken(dc) }

// OutSubject is the subject prefix under which dc publishes changes for other DCs: publish to
// OutSubject(dc)+".<anything>".
func OutSubject(dc string) string { return "drplane.out." + dc }

// SourceConsumer names the durable consumer on an origin's outbound stream that feeds target's inbound
// stream.
func SourceConsumer(target string) string { return "TO_" + StreamToken(target) }

// deliverSubject is where origin's durable consumer for target pushes; target's server subscribes to it,
// and the leafnode link between the two carries it.
func deliverSubject(origin, target string) string { return "drplane.src." + origin + "." + target }

// StreamOptions tunes the cross-DC streams.
type StreamOptions struct {
	// Storage is the streams' storage; the zero value is file storage.
	Storage jetstream.StorageType
	// MaxAge and MaxBytes limit what the streams keep (0: no limit).
	MaxAge   time.Duration
	MaxBytes int64
	// Duplicates is the Nats-Msg-Id dedup window of both streams (0: the server's default, 2 min).
	Duplicates time.Duration
	// Ephemeral makes inbound streams source through ephemeral consumers that the target's server
	// creates on demand, instead of durable consumers that EnsureOutbound creates on the origin. Durable
	// sourcing (server ≥ 2.14) resumes faster after an outage.
	Ephemeral bool
}

// EnsureOutbound creates or updates dc's outbound stream through js, a JetStream context on dc's own
// server, and, unless opts.Ephemeral, one durable sourcing consumer on it per peer DC.
func EnsureOutbound(ctx context.Context, js jetstream.JetStream, dc string, peers []string, opts StreamOptions) error {
	if err := checkDCs(dc, peers); err != nil {
		return err
	}
	out, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        OutStream(dc),
		Description: "changes captured in " + dc + ", for the other DCs",
		Subjects:    []string{OutSubject(dc) + ".>"},
		Storage:     opts.Storage,
		MaxAge:      opts.MaxAge,
		MaxBytes:    maxBytes(opts.MaxBytes),
		Duplicates:  opts.Duplicates,
	})
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrStreams, OutStream(dc), err)
	}
	if opts.Ephemeral {
		return nil
	}
	for _, peer := range peers {
		_, err := out.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{
			Durable:        SourceConsumer(peer),
			Description:    "sources " + OutStream(dc) + " into " + InStream(peer),
			DeliverSubject: deliverSubject(dc, peer),
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckPolicy:      jetstream.AckFlowControlPolicy,
			FlowControl:    true,
			IdleHeartbeat:  sourceHeartbeat,
		})
		if err != nil {
			return fmt.Errorf("%w: consumer %s on %s: %w", ErrStreams, SourceConsumer(peer), OutStream(dc), err)
		}
	}
	return nil
}

// sourceCheckTimeout bounds the look-up of one peer's sourcing consumer.
const sourceCheckTimeout = 2 * time.Second

// EnsureInbound creates or updates dc's inbound stream through js, a JetStream context on dc's own server.
// It sources OutStream(peer) from the JetStream domain of every peer, and returns the peers it left out
// for now (call it again until there are none).
//
// With durable sourcing (the default) a peer becomes a source only once its outbound stream's consumer
// for dc (SourceConsumer(dc), which EnsureOutbound creates in the peer's DC) answers: a source set up
// before or while its durable consumer is created can start after the first messages of the origin
// (measured with nats-server 2.15.2 on three DCs started at once: in about one start in six, a target's
// source stalled until the origin published again and then went on past its first messages, which
// reached the target only through the ledger's republish). A peer the stream sources already stays a
// source, reachable or not: the server keeps retrying it. Ephemeral sources need no consumer on the
// origin, so every peer is sourced at once.
func EnsureInbound(ctx context.Context, js jetstream.JetStream, dc string, peers []string, opts StreamOptions) ([]string, error) {
	if err := checkDCs(dc, peers); err != nil {
		return nil, err
	}
	sourced := map[string]bool{}
	if s, err := js.Stream(ctx, InStream(dc)); err == nil {
		for _, src := range s.CachedInfo().Config.Sources {
			if src != nil {
				sourced[src.Name] = true
			}
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: stream %s: %w", ErrStreams, InStream(dc), err)
	}
	sources := make([]*jetstream.StreamSource, 0, len(peers))
	var pending []string
	for _, peer := range peers {
		src := &jetstream.StreamSource{Name: OutStream(peer), Domain: peer}
		if !opts.Ephemeral {
			if !sourced[src.Name] && !consumerExists(ctx, js, peer, dc) {
				pending = append(pending, peer)
				continue
			}
			src.Consumer = &jetstream.StreamConsumerSource{
				Name:           SourceConsumer(dc),
				DeliverSubject: deliverSubject(peer, dc),
			}
		}
		sources = append(sources, src)
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        InStream(dc),
		Description: "changes from the other DCs, to apply in " + dc,
		Sources:     sources,
		Storage:     opts.Storage,
		MaxAge:      opts.MaxAge,
		MaxBytes:    maxBytes(opts.MaxBytes),
		Duplicates:  opts.Duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %w", ErrStreams, InStream(dc), err)
	}
	return pending, nil
}

// consumerExists reports whether origin's outbound stream has its durable sourcing consumer for target,
// asked in origin's JetStream domain over js's connection (so across the leafnode link); an origin that
// does not answer in time counts as not having it.
func consumerExists(ctx context.Context, js jetstream.JetStream, origin, target string) bool {
	ojs, err := jetstream.NewWithDomain(js.Conn(), origin)
	if err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, sourceCheckTimeout)
	defer cancel()
	_, err = ojs.PushConsumer(cctx, OutStream(origin), SourceConsumer(target))
	return err == nil
}

// EnsureCrossDC sets up every DC in js (DC name → JetStream context on that DC's server): all outbound
// streams and their consumers first, then the inbound streams, each sourcing all other DCs.
func EnsureCrossDC(ctx context.Context, js map[string]jetstream.JetStream, opts StreamOptions) error {
	dcs := slices.Sorted(maps.Keys(js))
	others := func(dc string) []string {
		return slices.DeleteFunc(slices.Clone(dcs), func(o string) bool { return o == dc })
	}
	for _, dc := range dcs {
		if err := EnsureOutbound(ctx, js[dc], dc, others(dc), opts); err != nil {
			return err
		}
	}
	for _, dc := range dcs {
		pending, err := EnsureInbound(ctx, js[dc], dc, others(dc), opts)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return fmt.Errorf("%w: %s: the sourcing consumers of %v do not answer", ErrStreams, InStream(dc), pending)
		}
	}
	return nil
}

func checkDCs(dc string, peers []string) error {
	for _, n := range append([]string{dc}, peers...) {
		if !ValidDC(n) {
			return fmt.Errorf("%w: DC name %q", ErrStreams, n)
		}
	}
	if slices.Contains(peers, dc) {
		return fmt.Errorf("%w: %s lists itself as a peer", ErrStreams, dc)
	}
	return nil
}

// maxBytes maps "no limit" to the server's -1.
func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}
