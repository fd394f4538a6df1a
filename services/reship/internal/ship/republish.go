package ship

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/drplane/drplane/pkg/embednats"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

const (
	// RetryOfHeader names the outbound sequence a republished message
	// copies.
	RetryOfHeader = "Drplane-Retry-Of"
	// maxRepublish bounds the sequences of one request.
	maxRepublish = 10000
	// republishTimeout bounds the work of one request.
	republishTimeout = 30 * time.Second
)

// RepublishSubject is the request subject of dc's republish hook.
func RepublishSubject(dc string) string { return "drplane.reship." + dc + ".republish" }

// RepublishReply answers a republish request.
type RepublishReply struct {
	Republished []Republished      `json:"republished"`
	Failed      []RepublishFailure `json:"failed,omitempty"`
	// Error is set when the request itself was malformed.
	Error string `json:"error,omitempty"`
}

// Republished is one message published again.
type Republished struct {
	// Seq is the sequence it was read from and NewSeq where it was stored
	// again.
	Seq       uint64 `json:"seq"`
	NewSeq    uint64 `json:"new_seq"`
	RequestID string `json:"request_id"`
	MsgID     string `json:"msg_id"`
}

// RepublishFailure is a sequence that was not republished.
type RepublishFailure struct {
	Seq   uint64 `json:"seq"`
	Error string `json:"error"`
}

// RepublisherOptions configure a Republisher.
type RepublisherOptions struct {
	// NATS is the connection the hook listens and publishes on.
	NATS    *nats.Conn
	DC      string
	Metrics *Metrics
	Logger  zerolog.Logger
	Now     func() time.Time
}

// Republisher is the reconciler's retry hook.
type Republisher struct {
	o  RepublisherOptions
	js jetstream.JetStream
}

// NewRepublisher returns the hook; Run serves it.
func NewRepublisher(o RepublisherOptions) (*Republisher, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	js, err := jetstream.New(o.NATS)
	if err != nil {
		return nil, fmt.Errorf("ship: jetstream: %w", err)
	}
	return &Republisher{o: o, js: js}, nil
}

// Run answers requests on RepublishSubject(dc) until ctx ends. A request
// is a JSON list of OUT_<dc> sequences; the reply a RepublishReply.
func (r *Republisher) Run(ctx context.Context) error {
	sub, err := r.o.NATS.Subscribe(RepublishSubject(r.o.DC), func(m *nats.Msg) {
		var seqs []uint64
		var reply RepublishReply
		switch err := json.Unmarshal(m.Data, &seqs); {
		case err != nil:
			reply.Error = "body must be a JSON list of outbound stream sequences: " + err.Error()
		case len(seqs) > maxRepublish:
			reply.Error = "at most " + strconv.Itoa(maxRepublish) + " sequences per request"
		default:
			rctx, cancel := context.WithTimeout(ctx, republishTimeout)
			reply = r.Republish(rctx, seqs)
			cancel()
		}
		data, _ := json.Marshal(reply)
		if err := m.Respond(data); err != nil {
			r.o.Logger.Warn().Err(err).Msg("republish reply not sent")
		}
	})
	if err != nil {
		return fmt.Errorf("ship: subscribe %s: %w", RepublishSubject(r.o.DC), err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// Republish publishes the messages at seqs of OUT_<dc> again, each with a
// fresh Nats-Msg-Id.
func (r *Republisher) Republish(ctx context.Context, seqs []uint64) RepublishReply {
	reply := RepublishReply{Republished: []Republished{}}
	stream, err := r.js.Stream(ctx, embednats.OutStream(r.o.DC))
	if err != nil {
		for _, seq := range seqs {
			reply.Failed = append(reply.Failed, RepublishFailure{Seq: seq, Error: err.Error()})
		}
		r.o.Metrics.republished.WithLabelValues("failed").Add(float64(len(seqs)))
		return reply
	}
	for _, seq := range seqs {
		done, err := r.one(ctx, stream, seq)
		if err != nil {
			r.o.Metrics.republished.WithLabelValues("failed").Inc()
			reply.Failed = append(reply.Failed, RepublishFailure{Seq: seq, Error: err.Error()})
			continue
		}
		r.o.Metrics.republished.WithLabelValues("ok").Inc()
		reply.Republished = append(reply.Republished, done)
	}
	r.o.Logger.Info().Int("republished", len(reply.Republished)).Int("failed", len(reply.Failed)).Msg("republish request served")
	return reply
}

func (r *Republisher) one(ctx context.Context, stream jetstream.Stream, seq uint64) (Republished, error) {
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return Republished{}, err
	}
	var ev drplanev1.ChangeEvent
	if err := proto.Unmarshal(raw.Data, &ev); err != nil {
		return Republished{}, fmt.Errorf("not a ChangeEvent: %w", err)
	}
	id := raw.Header.Get(jetstream.MsgIDHeader)
	if id == "" {
		id = MsgID(ev.OriginDc, ev.RequestId)
	}
	h := nats.Header{}
	for k, v := range raw.Header {
		h[k] = append([]string(nil), v...)
	}
	newID := id + ":retry-" + strconv.FormatInt(r.o.Now().UnixNano(), 10)
	h.Set(jetstream.MsgIDHeader, newID)
	h.Set(RetryOfHeader, strconv.FormatUint(seq, 10))
	ack, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: h})
	if err != nil {
		return Republished{}, err
	}
	return Republished{Seq: seq, NewSeq: ack.Sequence, RequestID: ev.RequestId, MsgID: newID}, nil
}
