package repl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/topology"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Bounds of the dead-letter calls.
const (
	defaultDLQLimit = 100
	maxDLQLimit     = 1000
	// natsTimeout bounds one JetStream call to a DC.
	natsTimeout = 10 * time.Second
)

// dlq is one DC's dead-letter stream, reached in the DC's JetStream domain.
type dlq struct {
	dc     string
	js     jetstream.JetStream
	stream jetstream.Stream // nil when the stream does not exist (yet)
}

// openDLQ finds dc's dead-letter stream.
func (s *Service) openDLQ(ctx context.Context, dc string) (*dlq, error) {
	if !s.o.NATS.IsConnected() {
		return nil, apierr.New(drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			"this coordinator is not connected to its NATS (status "+s.o.NATS.Status().String()+"); retry when it is")
	}
	js, err := jetstream.NewWithDomain(s.o.NATS, dc)
	if err != nil {
		return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, "JetStream context")
	}
	cctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	st, err := js.Stream(cctx, embednats.DLQStream(dc))
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return &dlq{dc: dc, js: js}, nil
	case err != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable(dc, err)
	}
	return &dlq{dc: dc, js: js, stream: st}, nil
}

// unreachable is the error of a DC whose JetStream does not answer.
func unreachable(dc string, err error) error {
	return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE,
		fmt.Sprintf("cannot reach the JetStream of DC %s (domain %s): %v", dc, dc, err))
}

// next returns the first dead letter at or after seq whose subject matches
// filter, or nil when there is none.
func (q *dlq) next(ctx context.Context, seq uint64, filter string) (*jetstream.RawStreamMsg, error) {
	cctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	m, err := q.stream.GetMsg(cctx, seq, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unreachable(q.dc, err)
	}
	return m, nil
}

// list returns up to limit dead letters after seq matching filter, and
// whether more follow.
func (q *dlq) list(ctx context.Context, after uint64, filter string, limit int) ([]*jetstream.RawStreamMsg, bool, error) {
	var out []*jetstream.RawStreamMsg
	if q.stream == nil {
		return nil, false, nil
	}
	seq := after + 1
	for len(out) <= limit {
		m, err := q.next(ctx, seq, filter)
		if err != nil {
			return nil, false, err
		}
		if m == nil {
			return out, false, nil
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
	return out[:limit], true, nil
}

// ListDeadLetters lists a DC's dead letters, oldest first.
func (s *Service) ListDeadLetters(ctx context.Context, req *drplanev1.ListDeadLettersRequest) (*drplanev1.ListDeadLettersResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultDLQLimit
	case limit < 0 || limit > maxDLQLimit:
		return nil, apierr.InvalidArgument("limit", fmt.Sprintf("limit must be between 1 and %d", maxDLQLimit))
	}
	t, err := s.readTopology(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkDC(t, "dc", req.GetDc()); err != nil {
		return nil, err
	}
	filter := embednats.DLQSubject(req.GetDc()) + ".>"
	if o := req.GetOriginDc(); o != "" {
		if !topology.ValidName(o) {
			return nil, apierr.InvalidArgument("origin_dc", fmt.Sprintf("%q is not a DC name", o))
		}
		filter = embednats.DLQSubject(req.GetDc()) + "." + o
	}
	if s.o.NATS == nil {
		return nil, errOff()
	}
	q, err := s.openDLQ(ctx, req.GetDc())
	if err != nil {
		return nil, err
	}
	msgs, more, err := q.list(ctx, req.GetAfterSequence(), filter, limit)
	if err != nil {
		return nil, err
	}
	resp := &drplanev1.ListDeadLettersResponse{More: more}
	if q.stream != nil {
		resp.Total = q.stream.CachedInfo().State.Msgs
	}
	for _, m := range msgs {
		resp.DeadLetters = append(resp.DeadLetters, deadLetter(req.GetDc(), m))
	}
	return resp, nil
}

// deadLetter converts a DLQ message: headers first, the event for what
// they lack.
func deadLetter(dc string, m *jetstream.RawStreamMsg) *drplanev1.DeadLetter {
	h := m.Header
	out := &drplanev1.DeadLetter{
		Dc: dc, Sequence: m.Sequence, Time: timestamppb.New(m.Time), OriginDc: h.Get(embednats.HeaderOrigin),
		RequestId: h.Get(embednats.HeaderRequestID), Error: h.Get(embednats.HeaderError),
		Subject: h.Get(embednats.HeaderSubject), Stream: h.Get(embednats.HeaderStream), Size: int32(min(len(m.Data), 1<<31-1)), //nolint:gosec // bounded above
	}
	if n, err := strconv.ParseUint(h.Get(embednats.HeaderSequence), 10, 64); err == nil {
		out.StreamSequence = n
	}
	if out.OriginDc == "" {
		out.OriginDc = strings.TrimPrefix(m.Subject, embednats.DLQSubject(dc)+".")
	}
	ev := &drplanev1.ChangeEvent{}
	if proto.Unmarshal(m.Data, ev) == nil {
		out.Keyspace, out.Shard, out.Gtid = ev.GetKeyspace(), ev.GetShard(), ev.GetGtid()
		if out.RequestId == "" {
			out.RequestId = ev.GetRequestId()
		}
	}
	return out
}

// RetryDeadLetters puts dead letters back into the DC's inbound stream
// (subject drplane.replay.<dc>.<origin>) and deletes each from the
// dead-letter stream once it is stored there.
func (s *Service) RetryDeadLetters(ctx context.Context, req *drplanev1.RetryDeadLettersRequest) (*drplanev1.RetryDeadLettersResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ev := s.aud.event(who, req)
	resp, err := s.retry(ctx, req)
	failed := ""
	if resp != nil && resp.GetFailed() > 0 {
		failed = fmt.Sprintf("%d of %d dead letters not retried", resp.GetFailed(), resp.GetFailed()+resp.GetRetried())
	}
	if resp != nil {
		ev.Params["retried"] = strconv.Itoa(int(resp.GetRetried()))
		ev.Params["failed"] = strconv.Itoa(int(resp.GetFailed()))
	}
	s.aud.finish(ctx, ev, err, failed)
	if err != nil {
		return nil, err
	}
	s.o.Logger.Info().Str("dc", req.GetDc()).Str("by", who).Int32("retried", resp.GetRetried()).
		Int32("failed", resp.GetFailed()).Msg("dead letters retried")
	return resp, nil
}

func (s *Service) retry(ctx context.Context, req *drplanev1.RetryDeadLettersRequest) (*drplanev1.RetryDeadLettersResponse, error) {
	seqs := req.GetSequences()
	switch {
	case req.GetAll() && len(seqs) > 0:
		return nil, apierr.InvalidArgument("sequences", "give either sequences or all, not both")
	case !req.GetAll() && len(seqs) == 0:
		return nil, apierr.InvalidArgument("sequences", "name the dead letters to retry (their DLQ sequences) or set all")
	case len(seqs) > maxDLQLimit:
		return nil, apierr.InvalidArgument("sequences", fmt.Sprintf("at most %d sequences per call", maxDLQLimit))
	}
	for _, seq := range seqs {
		if seq == 0 {
			return nil, apierr.InvalidArgument("sequences", "sequences start at 1")
		}
	}
	t, err := s.readTopology(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkDC(t, "dc", req.GetDc()); err != nil {
		return nil, err
	}
	if s.o.NATS == nil {
		return nil, errOff()
	}
	q, err := s.openDLQ(ctx, req.GetDc())
	if err != nil {
		return nil, err
	}
	resp := &drplanev1.RetryDeadLettersResponse{}
	var msgs []*jetstream.RawStreamMsg
	if req.GetAll() {
		if msgs, resp.More, err = q.list(ctx, 0, embednats.DLQSubject(req.GetDc())+".>", maxDLQLimit); err != nil {
			return nil, err
		}
	}
	for _, seq := range seqs {
		m, err := q.get(ctx, seq)
		if err != nil {
			resp.Results = append(resp.Results, &drplanev1.RetriedDeadLetter{Sequence: seq, Error: err.Error()})
			resp.Failed++
			continue
		}
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		r := s.putBack(ctx, q, m)
		if r.GetReplaySequence() > 0 {
			resp.Retried++
		} else {
			resp.Failed++
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// get returns the dead letter at seq.
func (q *dlq) get(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	if q.stream == nil {
		return nil, fmt.Errorf("no dead letter %d: %s has no dead-letter stream", seq, q.dc)
	}
	m, err := q.next(ctx, seq, embednats.DLQSubject(q.dc)+".>")
	switch {
	case err != nil:
		return nil, err
	case m == nil || m.Sequence != seq:
		return nil, fmt.Errorf("no dead letter %d in %s", seq, embednats.DLQStream(q.dc))
	}
	return m, nil
}

// putBack republishes one dead letter into the inbound stream, deletes it
// from the dead-letter stream and reports the retry to the ledger.
func (s *Service) putBack(ctx context.Context, q *dlq, m *jetstream.RawStreamMsg) *drplanev1.RetriedDeadLetter {
	dl := deadLetter(q.dc, m)
	r := &drplanev1.RetriedDeadLetter{Sequence: m.Sequence, OriginDc: dl.GetOriginDc(), RequestId: dl.GetRequestId()}
	if !topology.ValidName(dl.GetOriginDc()) {
		r.Error = fmt.Sprintf("no origin DC in the dead letter (subject %s)", m.Subject)
		return r
	}
	msg := nats.NewMsg(embednats.ReplaySubject(q.dc) + "." + dl.GetOriginDc())
	msg.Data = m.Data
	msg.Header.Set(embednats.HeaderOrigin, dl.GetOriginDc())
	if dl.GetRequestId() != "" {
		msg.Header.Set(embednats.HeaderRequestID, dl.GetRequestId())
	}
	msg.Header.Set(embednats.HeaderRetryOfDLQ, strconv.FormatUint(m.Sequence, 10))
	// The same dead letter put back twice within the inbound stream's dedup
	// window (a retry whose delete failed) is stored once.
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%s#dlq-%s-%d", dl.GetOriginDc(), dl.GetRequestId(), q.dc, m.Sequence))
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	ack, err := q.js.PublishMsg(pctx, msg, jetstream.WithExpectStream(embednats.InStream(q.dc)))
	cancel()
	if err != nil {
		r.Error = fmt.Sprintf("not put back into %s: %v", embednats.InStream(q.dc), err)
		return r
	}
	r.ReplaySequence = ack.Sequence
	dctx, cancel := context.WithTimeout(ctx, natsTimeout)
	err = q.stream.DeleteMsg(dctx, m.Sequence)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		r.Error = fmt.Sprintf("put back, but not removed from %s: %v", embednats.DLQStream(q.dc), err)
	}
	s.reportRetry(ctx, q, dl)
	return r
}

// reportRetry publishes a RETRIED fact for the dead letter's request on
// the DC's ledger stream, so that the ledger stops counting it as
// dead-lettered. Best effort: a lost fact leaves the request shown
// dead-lettered until the DC applies it.
func (s *Service) reportRetry(ctx context.Context, q *dlq, dl *drplanev1.DeadLetter) {
	if dl.GetRequestId() == "" {
		return
	}
	now := s.o.Now().UTC()
	u := &drplanev1.LedgerUpdate{
		OriginDc: dl.GetOriginDc(), RequestId: dl.GetRequestId(), Kind: drplanev1.LedgerUpdate_KIND_RETRIED,
		Dc: q.dc, At: timestamppb.New(now), Keyspace: dl.GetKeyspace(), Shard: dl.GetShard(), Gtid: dl.GetGtid(),
	}
	data, err := proto.Marshal(u)
	if err != nil {
		return
	}
	msg := nats.NewMsg(embednats.LedgerSubject(q.dc) + ".retried")
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%s:retried:%s:%d", dl.GetOriginDc(), dl.GetRequestId(), q.dc, now.UnixNano()))
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	if _, err := q.js.PublishMsg(pctx, msg); err != nil {
		s.o.Logger.Warn().Err(err).Str("dc", q.dc).Str("request", dl.GetRequestId()).Msg("dead-letter retry not reported to the ledger")
	}
}
