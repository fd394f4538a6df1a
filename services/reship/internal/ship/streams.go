package ship

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/drplane/drplane/pkg/embednats"
)

// EnsureStreams creates or updates dc's outbound stream (with one durable
// sourcing consumer per peer, see embednats.EnsureOutbound) and its ledger
// stream.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, dc string, peers []string, opts embednats.StreamOptions) error {
	if err := embednats.EnsureOutbound(ctx, js, dc, peers, opts); err != nil {
		return err
	}
	if err := EnsureLedgerStream(ctx, js, dc); err != nil {
		return fmt.Errorf("ship: ledger stream %s: %w", LedgerStream(dc), err)
	}
	return nil
}
