package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// handoffLine is the JSON line written per finished handoff with -o json.
type handoffLine struct {
	Operation string `json:"operation_id"`
	Keyspace  string `json:"keyspace"`
	Shard     int32  `json:"shard"`
	From      string `json:"from"`
	To        string `json:"to"`
	Backup    string `json:"backup"`
	Wave      int32  `json:"wave"`
	// Outcome is MOVED, SKIPPED or ABORTED.
	Outcome   string     `json:"outcome"`
	Watermark string     `json:"watermark"`
	BlockMs   int64      `json:"block_ms"`
	FrozenAt  *time.Time `json:"frozen_at,omitempty"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
	Revision  int64      `json:"revision"`
	Error     string     `json:"error,omitempty"`
}

func lineOf(opID string, h *drplanev1.Handoff) handoffLine {
	l := handoffLine{Operation: opID, Keyspace: h.GetKeyspace(), Shard: h.GetShard(), From: h.GetFromDc(), To: h.GetToDc(),
		Backup: h.GetBackupDc(), Wave: h.GetWave(), Outcome: handoffState(h.GetState()), Watermark: h.GetWatermark(),
		BlockMs: h.GetBlockMs(), Revision: h.GetRevision(), Error: h.GetError()}
	if h.GetFrozenAt() != nil {
		t := h.GetFrozenAt().AsTime().UTC()
		l.FrozenAt = &t
	}
	if h.GetDoneAt() != nil {
		t := h.GetDoneAt().AsTime().UTC()
		l.DoneAt = &t
	}
	return l
}

// jsonProgress writes one JSON line per finished handoff to stdout and the
// final summary to stderr, so that stdout stays one object per line.
type jsonProgress struct {
	out, errw io.Writer
	enc       *json.Encoder
}

func (p *jsonProgress) update(op *drplanev1.Operation, done []*drplanev1.Handoff) {
	if p.enc == nil {
		p.enc = json.NewEncoder(p.out)
	}
	for _, h := range done {
		_ = p.enc.Encode(lineOf(op.GetId(), h)) // a broken stdout shows in the exit of the pipeline
	}
}

func (p *jsonProgress) finish(op *drplanev1.Operation) {
	_, _ = io.WriteString(p.errw, operationSummary(op))
}

func (p *jsonProgress) stop() {}

// lineProgress writes plain lines: the operation's state when it changes,
// one line per finished handoff, and the summary.
type lineProgress struct {
	out   io.Writer
	state drplanev1.OperationState
}

func (p *lineProgress) update(op *drplanev1.Operation, done []*drplanev1.Handoff) {
	if op.GetState() != p.state {
		p.state = op.GetState()
		t := op.GetTotals()
		fmt.Fprintf(p.out, "%s %s %s: %s, %d shards in %d waves\n", time.Now().UTC().Format("15:04:05"), opKind(op.GetKind()),
			op.GetDc(), opState(op.GetState()), t.GetShards(), t.GetWaves())
	}
	for _, h := range done {
		fmt.Fprintf(p.out, "%s wave %d %s/%d %s -> %s %s block %s watermark %s%s\n", time.Now().UTC().Format("15:04:05"),
			h.GetWave(), cell(h.GetKeyspace()), h.GetShard(), cell(h.GetFromDc()), cell(h.GetToDc()), handoffState(h.GetState()),
			ms(h.GetBlockMs()), orDash(cell(h.GetWatermark())), errSuffix(h.GetError()))
	}
}

func (p *lineProgress) finish(op *drplanev1.Operation) {
	_, _ = io.WriteString(p.out, operationSummary(op))
}

func (p *lineProgress) stop() {}

// barProgress draws a progress bar of the shards handed off; handoffs that
// did not move are printed above it.
type barProgress struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

func newBarProgress(out io.Writer) *barProgress { return &barProgress{out: out} }

func (p *barProgress) update(op *drplanev1.Operation, done []*drplanev1.Handoff) {
	t := op.GetTotals()
	if p.bar == nil {
		p.bar = progressbar.NewOptions(int(max(t.GetShards(), 1)),
			progressbar.OptionSetWriter(p.out),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionSetItsString("shards"))
	}
	if n := int(t.GetShards()); n > 0 && n != p.bar.GetMax() {
		p.bar.ChangeMax(n) // an evacuation planned extra waves
	}
	for _, h := range done {
		if h.GetState() != drplanev1.HandoffState_HANDOFF_STATE_MOVED && h.GetState() != drplanev1.HandoffState_HANDOFF_STATE_SKIPPED {
			_ = p.bar.Clear()
			fmt.Fprintf(p.out, "wave %d %s/%d %s -> %s %s%s\n", h.GetWave(), cell(h.GetKeyspace()), h.GetShard(),
				cell(h.GetFromDc()), cell(h.GetToDc()), handoffState(h.GetState()), errSuffix(h.GetError()))
		}
	}
	p.bar.Describe(fmt.Sprintf("%s %s %s wave %d/%d", opKind(op.GetKind()), op.GetDc(), opState(op.GetState()),
		min(t.GetWavesDone()+1, t.GetWaves()), t.GetWaves()))
	_ = p.bar.Set(int(t.GetMoved() + t.GetSkipped()))
}

func (p *barProgress) finish(op *drplanev1.Operation) {
	if p.bar != nil {
		_ = p.bar.Exit()
		fmt.Fprintln(p.out)
	}
	_, _ = io.WriteString(p.out, operationSummary(op))
}

func (p *barProgress) stop() {
	if p.bar != nil {
		_ = p.bar.Exit()
		fmt.Fprintln(p.out)
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + truncate(cell(e), 2*maxErrorWidth)
}
