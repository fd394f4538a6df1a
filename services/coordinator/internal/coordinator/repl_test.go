package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/check"
	"github.com/drplane/drplane/pkg/daemon"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/embednats"
	"github.com/drplane/drplane/pkg/freeport"
	"github.com/drplane/drplane/pkg/harness"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/coordinator"
	"github.com/drplane/drplane/services/coordinator/internal/ledger"
	"github.com/drplane/drplane/services/coordinator/internal/repl"
)

const operatorToken = "operator-token"

// replLab is the lab's three DCs with their cross-DC, dead-letter and
// ledger streams, and one coordinator in dc-a1 tracking replication.
type replLab struct {
	st   *state.Store
	mesh *embednats.Mesh
	js   map[string]jetstream.JetStream
	c    *coord
	repl drplanev1.ReplicationServiceClient
}

func startReplLab(t *testing.T) *replLab {
	t.Helper()
	ctx := t.Context()
	st := state.New(harness.EtcdClient(t), "")
	seed(t, st)
	dcs := []string{"dc-a1", "dc-a2", "dc-b1"}
	mesh := harness.StartNATS(t, dcs...)
	js := map[string]jetstream.JetStream{}
	for _, dc := range dcs {
		js[dc] = harness.JetStream(t, mesh, dc)
	}
	require.NoError(t, embednats.EnsureCrossDC(ctx, js, embednats.StreamOptions{}))
	for _, dc := range dcs {
		require.NoError(t, embednats.EnsureInboundReplay(ctx, js[dc], dc))
		require.NoError(t, embednats.EnsureDLQ(ctx, js[dc], dc, embednats.StreamOptions{}))
		require.NoError(t, embednats.EnsureLedger(ctx, js[dc], dc, embednats.StreamOptions{}))
	}
	docs, err := embedded.Open(embedded.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = docs.Close() })
	n, err := coordinator.NewNode(coordinator.NodeOptions{
		Store: st, ID: "coord-a1", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Tokens: []auth.Token{
			{Name: "ops-admin", Role: "admin", SHA256: auth.Hash(adminToken)},
			{Name: "oncall", Role: "operator", SHA256: auth.Hash(operatorToken)},
			{Name: "dashboard", Role: "viewer", SHA256: auth.Hash(viewerToken)},
		},
		LeaderTTL: 2 * time.Second, Logger: zerolog.Nop(),
		Audit: coordinator.AuditOptions{Docs: docs},
		Replication: coordinator.ReplicationOptions{
			NATS: harness.NATSConn(t, mesh, "dc-a1"), DC: "dc-a1", Ledger: ledger.Config{ReconcileEvery: time.Hour},
		},
	})
	require.NoError(t, err)
	require.NotNil(t, n.Ledger)
	c := runNode(t, n, "coord-a1")
	conn, err := grpc.NewClient(n.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &replLab{st: st, mesh: mesh, js: js, c: c, repl: drplanev1.NewReplicationServiceClient(conn)}
}

// runNode runs n until the test ends.
func runNode(t *testing.T, n *coordinator.Node, id string) *coord {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(callTimeout):
			t.Error("coordinator did not stop")
		}
	})
	check.For(t, callTimeout, 5*time.Millisecond, func() error { return check.That(n.CacheReady() == nil, "n.CacheReady() == nil") })
	return &coord{id: id, node: n, base: "http://" + n.Server.HTTPAddr()}
}

// publishFact stores a ledger fact in the reporting DC's ledger stream.
func (l *replLab) publishFact(t *testing.T, u *drplanev1.LedgerUpdate, kind string) {
	t.Helper()
	data, err := proto.Marshal(u)
	require.NoError(t, err)
	_, err = l.js[u.GetDc()].Publish(t.Context(), embednats.LedgerSubject(u.GetDc())+"."+kind, data)
	require.NoError(t, err)
}

func TestReplicationGetRequest(t *testing.T) {
	l := startReplLab(t)
	at := time.Now().UTC().Truncate(time.Millisecond)
	const rid = "1-101-42/7"
	l.publishFact(t, &drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: rid, Kind: drplanev1.LedgerUpdate_KIND_APPLIED,
		Dc: "dc-b1", At: timestamppb.New(at.Add(30 * time.Millisecond)), Keyspace: "orders", Shard: 7}, "applied")
	l.publishFact(t, &drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: rid, Kind: drplanev1.LedgerUpdate_KIND_CAPTURED,
		Dc: "dc-a1", At: timestamppb.New(at), Keyspace: "orders", Shard: 7, Gtid: "1-101-42",
		Targets: []string{"dc-a2", "dc-b1"}, OutboundSeq: 42}, "captured")

	var rec *drplanev1.LedgerRecord
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		resp, err := l.repl.GetRequest(as(t, viewerToken), &drplanev1.GetRequestRequest{OriginDc: "dc-a1", RequestId: rid})
		if status.Code(err) == codes.NotFound {
			return err
		}
		require.NoError(t, err)
		rec = resp.GetRecord()
		return check.That(rec.GetCapturedAt() != nil && len(rec.GetTargetStatus()) == 2 && rec.GetTargetStatus()[1].GetAppliedAt() != nil, "rec.GetCapturedAt() != nil && len(rec.GetTargetStatus()) == 2 && rec.GetTargetStatus()[1].GetAppliedAt() != nil")
	})
	assert.Equal(t, drplanev1.RequestState_REQUEST_STATE_PENDING, rec.GetState())
	assert.Equal(t, "1-101-42", rec.GetGtid())
	assert.Equal(t, uint64(42), rec.GetOutboundSeq())
	assert.Equal(t, at, rec.GetCapturedAt().AsTime())
	assert.Equal(t, "dc-a2", rec.GetTargetStatus()[0].GetDc())
	assert.Nil(t, rec.GetTargetStatus()[0].GetAppliedAt())
	assert.Equal(t, at.Add(30*time.Millisecond), rec.GetTargetStatus()[1].GetAppliedAt().AsTime())

	// REST, the request id's slash in the path.
	code, body := l.c.rest(t, http.MethodGet, "/v1/replication/requests/dc-a1/"+rid, viewerToken, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var got struct {
		Record struct {
			RequestID   string   `json:"request_id"`
			State       string   `json:"state"`
			Targets     []string `json:"targets"`
			OutboundSeq string   `json:"outbound_seq"`
		} `json:"record"`
	}
	require.NoError(t, json.Unmarshal(body, &got), "%s", body)
	assert.Equal(t, rid, got.Record.RequestID)
	assert.Equal(t, "REQUEST_STATE_PENDING", got.Record.State)
	assert.Equal(t, []string{"dc-a2", "dc-b1"}, got.Record.Targets)
	assert.Equal(t, "42", got.Record.OutboundSeq)

	// Unknown request, unknown DC, no token.
	_, err := l.repl.GetRequest(as(t, viewerToken), &drplanev1.GetRequestRequest{OriginDc: "dc-a1", RequestId: "9-9-9/1"})
	assert.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), `"dc-a1:9-9-9/1" not in the ledger`)
	_, err = l.repl.GetRequest(as(t, viewerToken), &drplanev1.GetRequestRequest{OriginDc: "dc-zz", RequestId: rid})
	e, ok := apierr.FromError(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, "origin_dc", e.Field)
	code, _ = l.c.rest(t, http.MethodGet, "/v1/replication/requests/dc-a1/"+rid, "", "")
	assert.Equal(t, http.StatusUnauthorized, code)
}

func TestReplicationStatus(t *testing.T) {
	l := startReplLab(t)
	ctx := t.Context()
	now := time.Now().UTC()
	// dc-b1's collector reports on dc-a1 and dc-a2; dc-a2's on dc-a1 only.
	for _, s := range []state.ReplStats{
		{DC: "dc-b1", Origin: "dc-a1", Collector: "dc-b1-collector-1", Applied: 1200, Rows: 2400, EventsPerSec: 410.5,
			LagP50Ms: 3.2, LagP99Ms: 41.7, Pending: 17, DeadLettered: 2, Duplicates: 5, Redelivered: 1,
			LastAppliedAt: now.Add(-time.Second), UpdatedAt: now},
		{DC: "dc-b1", Origin: "dc-a2", Collector: "dc-b1-collector-1", Applied: 9, Pending: 17, UpdatedAt: now},
		{DC: "dc-a2", Origin: "dc-a1", Collector: "dc-a2-collector-1", Applied: 1201, UpdatedAt: now},
	} {
		_, err := state.Put(ctx, l.st, l.st.ReplStatsKey(s.DC, s.Origin), s, state.PutOptions{})
		require.NoError(t, err)
	}
	var err error
	for shard, age := range map[int32]time.Duration{3: 2 * time.Second, 4: 9 * time.Second} {
		w := state.Watermark{DC: "dc-b1", Origin: "dc-a1", Keyspace: "orders", Shard: shard, RequestID: "x",
			GTID: "1-1-" + strconv.Itoa(int(shard)), CommitTime: now.Add(-age - time.Millisecond), AppliedAt: now.Add(-age)}
		_, err := state.Put(ctx, l.st, l.st.WatermarkKey(w.DC, w.Origin, w.Keyspace, w.Shard), w, state.PutOptions{})
		require.NoError(t, err)
	}
	// The ledger: one request from dc-a1 pending in dc-b1 and retried once,
	// one dead-lettered in dc-b1.
	old := now.Add(-time.Hour)
	for _, f := range []struct {
		u    *drplanev1.LedgerUpdate
		kind string
	}{
		{&drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "1-1-1/3", Kind: drplanev1.LedgerUpdate_KIND_CAPTURED, Dc: "dc-a1",
			At: timestamppb.New(old), Targets: []string{"dc-a2", "dc-b1"}, OutboundSeq: 1}, "captured"},
		{&drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "1-1-1/3", Kind: drplanev1.LedgerUpdate_KIND_RETRIED, Dc: "dc-a1",
			At: timestamppb.New(old.Add(time.Minute))}, "retried"},
		{&drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "1-1-2/3", Kind: drplanev1.LedgerUpdate_KIND_CAPTURED, Dc: "dc-a1",
			At: timestamppb.New(old.Add(time.Second)), Targets: []string{"dc-a2", "dc-b1"}, OutboundSeq: 2}, "captured"},
		{&drplanev1.LedgerUpdate{OriginDc: "dc-a1", RequestId: "1-1-2/3", Kind: drplanev1.LedgerUpdate_KIND_DEAD_LETTERED, Dc: "dc-b1",
			At: timestamppb.New(old.Add(2 * time.Second)), Error: "unknown table"}, "dead_lettered"},
	} {
		l.publishFact(t, f.u, f.kind)
	}

	var resp *drplanev1.GetReplicationStatusResponse
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		resp, err = l.repl.GetReplicationStatus(as(t, viewerToken), &drplanev1.GetReplicationStatusRequest{})
		require.NoError(t, err)
		// The ledger indexes each fact on its own: wait for all four (the
		// backlog counts three of them, the pairs' retried count the other).
		retried := map[string]uint64{}
		for _, p := range resp.GetPairs() {
			retried[p.GetOriginDc()+">"+p.GetTargetDc()] = p.GetRetried()
		}
		if retried["dc-a1>dc-b1"] != 1 || retried["dc-a1>dc-a2"] != 1 {
			return check.That(false, "retried per pair: %v", retried)
		}
		for _, b := range resp.GetBacklog() {
			if b.GetDc() == "dc-a1" {
				return check.That(b.GetPending() == 1 && b.GetDeadLettered() == 1, "backlog: %v", resp)
			}
		}
		return check.That(false, "backlog: %v", resp)
	})
	assert.True(t, resp.GetLedger())
	require.Len(t, resp.GetPairs(), 6, "every ordered pair of the three DCs")
	pairs := map[string]*drplanev1.ReplicationPair{}
	for _, p := range resp.GetPairs() {
		pairs[p.GetOriginDc()+">"+p.GetTargetDc()] = p
	}
	ab := pairs["dc-a1>dc-b1"]
	require.NotNil(t, ab)
	assert.True(t, ab.GetReporting())
	assert.Equal(t, "dc-b1-collector-1", ab.GetCollector())
	assert.InDelta(t, 3.2, ab.GetLagP50Ms(), 1e-9)
	assert.InDelta(t, 41.7, ab.GetLagP99Ms(), 1e-9)
	assert.InDelta(t, 410.5, ab.GetEventsPerSec(), 1e-9)
	assert.Equal(t, uint64(17), ab.GetPending())
	assert.Equal(t, uint64(1200), ab.GetApplied())
	assert.Equal(t, uint64(2), ab.GetDeadLettered())
	assert.Equal(t, uint64(5), ab.GetDuplicates())
	assert.Equal(t, uint64(1), ab.GetRedelivered())
	assert.Equal(t, uint64(1), ab.GetRetried(), "one request to dc-b1 was retried")
	age := ab.GetWatermarkAge().AsDuration()
	assert.True(t, age >= 2*time.Second && age < 2*time.Second+callTimeout, "watermark age %s: the newest shard's", age)
	assert.Equal(t, now.Add(-2*time.Second-time.Millisecond), ab.GetWatermarkCommitTime().AsTime())
	assert.True(t, pairs["dc-a1>dc-a2"].GetReporting())
	assert.Equal(t, uint64(1), pairs["dc-a1>dc-a2"].GetRetried())
	assert.False(t, pairs["dc-b1>dc-a1"].GetReporting(), "no collector statistics")
	assert.Nil(t, pairs["dc-b1>dc-a1"].GetWatermarkAge())

	require.Len(t, resp.GetBacklog(), 3)
	var a1 *drplanev1.LedgerBacklog
	for _, b := range resp.GetBacklog() {
		if b.GetDc() == "dc-a1" {
			a1 = b
		}
	}
	assert.Equal(t, uint64(1), a1.GetPending())
	assert.Equal(t, uint64(1), a1.GetDeadLettered())
	assert.Equal(t, old, a1.GetOldestPendingCapturedAt().AsTime())

	// One DC: its pairs either way and its backlog only.
	resp, err = l.repl.GetReplicationStatus(as(t, viewerToken), &drplanev1.GetReplicationStatusRequest{Dc: "dc-b1"})
	require.NoError(t, err)
	require.Len(t, resp.GetPairs(), 4)
	for _, p := range resp.GetPairs() {
		assert.True(t, p.GetOriginDc() == "dc-b1" || p.GetTargetDc() == "dc-b1", "%v", p)
	}
	require.Len(t, resp.GetBacklog(), 1)
	assert.Equal(t, "dc-b1", resp.GetBacklog()[0].GetDc())
	_, err = l.repl.GetReplicationStatus(as(t, viewerToken), &drplanev1.GetReplicationStatusRequest{Dc: "dc-zz"})
	assert.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	code, body := l.c.rest(t, http.MethodGet, "/v1/replication/status?dc=dc-a2", viewerToken, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	assert.Contains(t, string(body), `"target_dc":"dc-a2"`)
}

// deadLetter stores a poison event in dc's DLQ the way the collector does.
func (l *replLab) deadLetter(t *testing.T, dc, origin, rid string, inSeq uint64) uint64 {
	t.Helper()
	data, err := proto.Marshal(&drplanev1.ChangeEvent{OriginDc: origin, RequestId: rid, Gtid: "1-101-9", Keyspace: "orders", Shard: 5})
	require.NoError(t, err)
	msg := nats.NewMsg(embednats.DLQSubject(dc) + "." + origin)
	msg.Data = data
	msg.Header.Set(embednats.HeaderError, "apply: unknown column 'colour'")
	msg.Header.Set(embednats.HeaderOrigin, origin)
	msg.Header.Set(embednats.HeaderRequestID, rid)
	msg.Header.Set(embednats.HeaderSubject, "drplane.out."+origin+".orders.5")
	msg.Header.Set(embednats.HeaderStream, embednats.InStream(dc))
	msg.Header.Set(embednats.HeaderSequence, strconv.FormatUint(inSeq, 10))
	msg.Header.Set(jetstream.MsgIDHeader, origin+":"+rid)
	ack, err := l.js[dc].PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	return ack.Sequence
}

func TestDeadLettersListAndRetry(t *testing.T) {
	l := startReplLab(t)
	seq1 := l.deadLetter(t, "dc-b1", "dc-a1", "1-101-9/5", 31)
	seq2 := l.deadLetter(t, "dc-b1", "dc-a2", "2-201-3/5", 32)
	seq3 := l.deadLetter(t, "dc-b1", "dc-a1", "1-101-10/5", 33)

	// A viewer lists them (the coordinator is in dc-a1: dc-b1's stream is
	// reached in its JetStream domain).
	list, err := l.repl.ListDeadLetters(as(t, viewerToken), &drplanev1.ListDeadLettersRequest{Dc: "dc-b1"})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), list.GetTotal())
	assert.False(t, list.GetMore())
	require.Len(t, list.GetDeadLetters(), 3)
	dl := list.GetDeadLetters()[0]
	assert.Equal(t, seq1, dl.GetSequence())
	assert.Equal(t, "dc-a1", dl.GetOriginDc())
	assert.Equal(t, "1-101-9/5", dl.GetRequestId())
	assert.Equal(t, "apply: unknown column 'colour'", dl.GetError())
	assert.Equal(t, "drplane.out.dc-a1.orders.5", dl.GetSubject())
	assert.Equal(t, "IN_dc_b1", dl.GetStream())
	assert.Equal(t, uint64(31), dl.GetStreamSequence())
	assert.Equal(t, "orders", dl.GetKeyspace())
	assert.Equal(t, int32(5), dl.GetShard())
	assert.Equal(t, "1-101-9", dl.GetGtid())

	// Paging and the origin filter.
	list, err = l.repl.ListDeadLetters(as(t, viewerToken), &drplanev1.ListDeadLettersRequest{Dc: "dc-b1", Limit: 1, OriginDc: "dc-a1"})
	require.NoError(t, err)
	require.Len(t, list.GetDeadLetters(), 1)
	assert.True(t, list.GetMore())
	list, err = l.repl.ListDeadLetters(as(t, viewerToken), &drplanev1.ListDeadLettersRequest{
		Dc: "dc-b1", OriginDc: "dc-a1", AfterSequence: list.GetDeadLetters()[0].GetSequence(),
	})
	require.NoError(t, err)
	require.Len(t, list.GetDeadLetters(), 1)
	assert.Equal(t, seq3, list.GetDeadLetters()[0].GetSequence())
	_, err = l.repl.ListDeadLetters(as(t, viewerToken), &drplanev1.ListDeadLettersRequest{Dc: "dc-b1", Limit: 5000})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))

	// A viewer may not retry; the refusal is audited.
	_, err = l.repl.RetryDeadLetters(as(t, viewerToken), &drplanev1.RetryDeadLettersRequest{Dc: "dc-b1", Sequences: []uint64{seq1}})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	denied := events(t, l.st, repl.ActionDLQRetry)
	require.Len(t, denied, 1)
	assert.Equal(t, audit.OutcomeDenied, denied[0].Outcome)
	assert.Equal(t, "token:dashboard", denied[0].Actor)

	// An operator retries one: it is put back into IN_dc_b1 on the replay
	// subject and leaves the DLQ.
	resp, err := l.repl.RetryDeadLetters(as(t, operatorToken), &drplanev1.RetryDeadLettersRequest{Dc: "dc-b1", Sequences: []uint64{seq1, 999}})
	require.NoError(t, err)
	assert.Equal(t, int32(1), resp.GetRetried())
	assert.Equal(t, int32(1), resp.GetFailed())
	require.Len(t, resp.GetResults(), 2)
	var ok, missing *drplanev1.RetriedDeadLetter
	for _, r := range resp.GetResults() {
		if r.GetSequence() == seq1 {
			ok = r
		} else {
			missing = r
		}
	}
	require.NotNil(t, ok)
	assert.Empty(t, ok.GetError())
	assert.Equal(t, "1-101-9/5", ok.GetRequestId())
	assert.Contains(t, missing.GetError(), "no dead letter 999")

	in, err := l.js["dc-b1"].Stream(t.Context(), embednats.InStream("dc-b1"))
	require.NoError(t, err)
	raw, err := in.GetMsg(t.Context(), ok.GetReplaySequence())
	require.NoError(t, err)
	assert.Equal(t, embednats.ReplaySubject("dc-b1")+".dc-a1", raw.Subject)
	assert.Equal(t, strconv.FormatUint(seq1, 10), raw.Header.Get(embednats.HeaderRetryOfDLQ))
	assert.Equal(t, "dc-a1", raw.Header.Get(embednats.HeaderOrigin))
	var ev drplanev1.ChangeEvent
	require.NoError(t, proto.Unmarshal(raw.Data, &ev))
	assert.Equal(t, "1-101-9/5", ev.GetRequestId(), "the payload is the dead letter's")

	dlq, err := l.js["dc-b1"].Stream(t.Context(), embednats.DLQStream("dc-b1"))
	require.NoError(t, err)
	_, err = dlq.GetMsg(t.Context(), seq1)
	assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "gone from the DLQ")
	evs := events(t, l.st, repl.ActionDLQRetry)
	require.Len(t, evs, 2)
	var done audit.Event
	for _, e := range evs {
		if e.Outcome != audit.OutcomeDenied {
			done = e
		}
	}
	assert.Equal(t, "token:oncall", done.Actor)
	assert.Equal(t, audit.OutcomeFailed, done.Outcome, "one of the two was not found")
	assert.Equal(t, "dc-b1", done.Target)
	assert.Equal(t, "1", done.Params["retried"])

	// The rest, over REST, with all.
	code, body := l.c.rest(t, http.MethodPost, "/v1/replication/dlq/dc-b1:retry", operatorToken, `{"all":true}`)
	require.Equal(t, http.StatusOK, code, "%s", body)
	assert.Contains(t, string(body), `"retried":2`)
	list, err = l.repl.ListDeadLetters(as(t, viewerToken), &drplanev1.ListDeadLettersRequest{Dc: "dc-b1"})
	require.NoError(t, err)
	assert.Empty(t, list.GetDeadLetters())
	assert.Zero(t, list.GetTotal())
	raw, err = in.GetLastMsgForSubject(t.Context(), embednats.ReplaySubject("dc-b1")+".dc-a2")
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(seq2, 10), raw.Header.Get(embednats.HeaderRetryOfDLQ))

	// The retries reach the ledger as RETRIED facts in dc-b1's stream.
	led, err := l.js["dc-b1"].Stream(t.Context(), embednats.LedgerStream("dc-b1"))
	require.NoError(t, err)
	info, err := led.Info(t.Context(), jetstream.WithSubjectFilter(embednats.LedgerSubject("dc-b1")+".retried"))
	require.NoError(t, err)
	assert.Equal(t, uint64(3), info.State.Subjects[embednats.LedgerSubject("dc-b1")+".retried"])

	// Bad requests.
	_, err = l.repl.RetryDeadLetters(as(t, operatorToken), &drplanev1.RetryDeadLettersRequest{Dc: "dc-b1"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = l.repl.RetryDeadLetters(as(t, operatorToken), &drplanev1.RetryDeadLettersRequest{Dc: "dc-b1", All: true, Sequences: []uint64{1}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

// TestReplicationWithoutNATS runs the coordinator binary's code without
// nats_url (status still answers from etcd, the rest is UNAVAILABLE), with a
// NATS that cannot be reached (the coordinator starts anyway; the
// dead-letter calls are UNAVAILABLE), and with a reachable one.
func TestReplicationWithoutNATS(t *testing.T) {
	mesh := harness.StartNATS(t, "dc-a1")
	ports, err := freeport.Pick(1)
	require.NoError(t, err)
	tests := []struct {
		name, url string
		ledger    bool
		request   codes.Code // of GetRequest for an unknown request
		dlq       codes.Code // of ListDeadLetters
	}{
		{name: "without nats_url", request: codes.Unavailable, dlq: codes.Unavailable},
		{name: "NATS unreachable", url: "nats://127.0.0.1:" + strconv.Itoa(ports[0]), ledger: true,
			request: codes.NotFound, dlq: codes.Unavailable},
		{name: "with NATS", url: mesh.URL("dc-a1"), ledger: true, request: codes.NotFound, dlq: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grpcAddr := runReplService(t, tt.url)
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			c := drplanev1.NewReplicationServiceClient(conn)
			var st *drplanev1.GetReplicationStatusResponse
			check.For(t, callTimeout, 20*time.Millisecond, func() error {
				st, err = c.GetReplicationStatus(as(t, viewerToken), &drplanev1.GetReplicationStatusRequest{})
				if err != nil {
					return err
				}
				return check.That(st.GetLedger() == tt.ledger, "the ledger answers once its index exists: %v", err)
			})
			assert.Len(t, st.GetPairs(), 6)
			_, err = c.GetRequest(as(t, viewerToken), &drplanev1.GetRequestRequest{OriginDc: "dc-a1", RequestId: "1-1-1/1"})
			assert.Equal(t, tt.request, status.Code(err), "%v", err)
			if tt.url == "" {
				assert.Contains(t, status.Convert(err).Message(), "no nats_url configured")
			}
			ctx, cancel := context.WithTimeout(as(t, viewerToken), 15*time.Second)
			defer cancel()
			list, err := c.ListDeadLetters(ctx, &drplanev1.ListDeadLettersRequest{Dc: "dc-a1"})
			assert.Equal(t, tt.dlq, status.Code(err), "%v", err)
			if tt.dlq == codes.OK {
				assert.Empty(t, list.GetDeadLetters(), "no DLQ stream yet is an empty list")
			}
		})
	}
}

// runReplService runs the coordinator service over a seeded etcd, with
// natsURL as its nats_url, and returns its gRPC address.
func runReplService(t *testing.T, natsURL string) string {
	t.Helper()
	cluster := harness.StartEtcd(t, 1)
	seed(t, state.New(harness.EtcdClientFor(t, cluster), ""))
	ports, err := freeport.Pick(3)
	require.NoError(t, err)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	cfg := map[string]any{
		"dc": "dc-a1", "id": "coord-repl-test", "health_addr": addr(0),
		"etcd":  map[string]any{"endpoints": cluster.Endpoints()},
		"log":   map[string]any{"level": "warn", "format": "json"},
		"api":   map[string]any{"grpc_addr": addr(1), "http_addr": addr(2)},
		"auth":  map[string]any{"tokens": []map[string]any{{"name": "dashboard", "role": "viewer", "sha256": auth.Hash(viewerToken)}}},
		"audit": map[string]any{"store": "embedded", "dir": filepath.Join(t.TempDir(), "audit")},
	}
	if natsURL != "" {
		cfg["nats_url"] = natsURL
	}
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "coordinator.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- daemon.MainContext(ctx, coordinator.Spec(coordinator.DefaultConfig()), []string{"--config", path}, logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, daemon.ExitOK, code, "logs:\n%s", logs)
		case <-time.After(callTimeout):
			t.Errorf("coordinator did not stop; logs:\n%s", logs)
		}
	})
	check.For(t, callTimeout, 20*time.Millisecond, func() error {
		select {
		case code := <-done:
			t.Fatalf("coordinator exited with %d:\n%s", code, logs)
		default:
		}
		resp, err := http.Get("http://" + addr(0) + "/readyz")
		if err != nil {
			return check.That(false, "never ready; logs:\n%s", logs)
		}
		_ = resp.Body.Close()
		return check.That(resp.StatusCode == http.StatusOK, "never ready; logs:\n%s", logs)
	})
	return addr(1)
}
