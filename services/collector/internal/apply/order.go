package apply

import (
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// gapConfirmations is how many times a reset must deliver the same later
// message first before the sequences in between count as deleted from the
// stream rather than lost in transit; the stream must also no longer hold
// the first of them (see sequencer.stored).
const gapConfirmations = 3

// sequencer keeps the apply in stream order, whatever JetStream redelivers
// when: the consumer delivers in stream order, but a delivery lost in
// transit (a NATS reconnect) or expired (ack wait) comes again only after
// later messages. The sequencer knows the stream sequence it expects next;
// a message before it was handled already (acked again, not applied), and a
// message after it means a gap: the batch is cut there and the consumer is
// reset to the expected sequence, which redelivers the missing messages
// first.
type sequencer struct {
	next uint64
	// The last gap seen, and how many resets in a row ended at it.
	gapFrom, gapTo uint64
	gapSeen        int
	// stored, when set, reports whether the stream still holds a
	// sequence: a gap is only accepted as deleted when it does not.
	stored func(seq uint64) (bool, error)
	log    zerolog.Logger
}

// filter splits fetched messages into those to apply (in order, next
// advanced past them) and stale ones to ack, stopping at a gap: then gap is
// true and the messages after it are left for the redelivery the caller
// triggers by resetting the consumer to next.
func (s *sequencer) filter(msgs []jetstream.Msg) (keep, stale []jetstream.Msg, gap bool) {
	for _, msg := range msgs {
		meta, err := msg.Metadata()
		if err != nil {
			keep = append(keep, msg)
			continue
		}
		seq := meta.Sequence.Stream
		switch {
		case seq < s.next:
			stale = append(stale, msg)
			continue
		case seq > s.next:
			if !s.confirmGap(seq) {
				return keep, stale, true
			}
			if s.stored != nil {
				if held, err := s.stored(s.next); err != nil || held {
					// Not deleted: its delivery went astray (for example
					// to a pull request of a stopped subscription); the
					// reset will bring it.
					s.gapSeen = 0
					return keep, stale, true
				}
			}
			s.log.Warn().Uint64("from", s.next).Uint64("to", seq-1).
				Msg("inbound stream messages missing (deleted from the stream); going on after them")
		}
		s.next = seq + 1
		keep = append(keep, msg)
	}
	return keep, stale, false
}

// confirmGap counts a gap from next to seq and reports whether it was seen
// often enough to be real.
func (s *sequencer) confirmGap(seq uint64) bool {
	if s.gapFrom == s.next && s.gapTo == seq {
		s.gapSeen++
	} else {
		s.gapFrom, s.gapTo, s.gapSeen = s.next, seq, 1
	}
	return s.gapSeen >= gapConfirmations
}
