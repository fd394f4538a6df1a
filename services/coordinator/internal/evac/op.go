package evac

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// Kind is what an operation does.
type Kind string

// Operation kinds.
const (
	KindEvacuate  Kind = "evacuate"
	KindRestore   Kind = "restore"
	KindMoveShard Kind = "move_shard"
)

// known reports whether this package runs operations of kind k (other
// kinds share /operations: the city failovers of package cityfail).
func (k Kind) known() bool { return k == KindEvacuate || k == KindRestore || k == KindMoveShard }

// State is where an operation is.
type State string

// Operation states.
const (
	// Pending: stored, not started by a leader yet.
	Pending State = "PENDING"
	// Running: a leader runs its waves.
	Running State = "RUNNING"
	// Canceling: cancel asked; the current wave finishes first.
	Canceling State = "CANCELING"
	// Canceled, Succeeded and Failed are final until a resume (the first
	// and the last).
	Canceled  State = "CANCELED"
	Succeeded State = "SUCCEEDED"
	Failed    State = "FAILED"
)

// Unfinished reports whether a leader still has to run the operation.
func (s State) Unfinished() bool { return s == Pending || s == Running || s == Canceling }

// Step is where one shard's handoff is.
type Step string

// Handoff steps.
const (
	StepPending Step = "PENDING"
	// StepFrozen: its wave started (the shard is frozen, or about to be).
	StepFrozen  Step = "FROZEN"
	StepMoved   Step = "MOVED"
	StepAborted Step = "ABORTED"
	StepSkipped Step = "SKIPPED"
)

// Done reports whether the handoff needs nothing more.
func (s Step) Done() bool { return s == StepMoved || s == StepSkipped }

// Handoff is one shard's move within an operation.
type Handoff struct {
	Keyspace  string `json:"ks"`
	Shard     int    `json:"shard"`
	From      string `json:"from"`
	To        string `json:"to"`
	Backup    string `json:"backup"`
	Wave      int    `json:"wave"`
	Step      Step   `json:"step"`
	Watermark string `json:"wm,omitempty"`
	// WaveAt is when the leader started the handoff's wave (just before
	// the freeze). A leader that resumes a wave a dead one started counts
	// the block window from here: the shard may have been frozen since.
	WaveAt   time.Time `json:"wave_at,omitzero"`
	FrozenAt time.Time `json:"frozen_at,omitzero"`
	DoneAt   time.Time `json:"done_at,omitzero"`
	Revision int64     `json:"rev,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Block is how long the shard refused writes (0 when it never froze).
func (h Handoff) Block() time.Duration {
	if h.FrozenAt.IsZero() || h.DoneAt.IsZero() {
		return 0
	}
	return h.DoneAt.Sub(h.FrozenAt)
}

// Target is the share of a plan that goes to one DC.
type Target struct {
	DC     string  `json:"dc"`
	Shards int     `json:"shards"`
	LagMs  float64 `json:"lag_ms"`
}

// Totals summarise an operation.
type Totals struct {
	Shards       int   `json:"shards"`
	Moved        int   `json:"moved"`
	Aborted      int   `json:"aborted"`
	Skipped      int   `json:"skipped"`
	Waves        int   `json:"waves"`
	WavesDone    int   `json:"waves_done"`
	BlockP50Ms   int64 `json:"block_p50_ms"`
	BlockP99Ms   int64 `json:"block_p99_ms"`
	BlockMaxMs   int64 `json:"block_max_ms"`
	DurationMs   int64 `json:"duration_ms"`
	StaleRouters int   `json:"stale_routers"`
}

// Operation is a long-running evacuation, restore or safe shard move,
// stored at /operations/<id>.
type Operation struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// DC is the DC evacuated or restored (the source of a move_shard).
	DC       string `json:"dc"`
	To       string `json:"to,omitempty"`
	MoveHome bool   `json:"move_home,omitempty"`
	Parallel int    `json:"parallel"`
	State    State  `json:"state"`
	// RequestedBy is the API token name of the caller.
	RequestedBy string    `json:"requested_by"`
	Reason      string    `json:"reason,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// Leader is the coordinator that runs (or ran) it.
	Leader   string    `json:"leader,omitempty"`
	Error    string    `json:"error,omitempty"`
	Targets  []Target  `json:"targets,omitempty"`
	Handoffs []Handoff `json:"handoffs"`
	// StaleRouters counts the acknowledgements that did not come within
	// the grace, over every wave.
	StaleRouters int `json:"stale_routers,omitempty"`
	// Replans counts the extra waves planned for shards the DC came to own
	// while it was evacuated.
	Replans int `json:"replans,omitempty"`

	// Revision is the etcd mod revision the record was read at. Not stored.
	Revision int64 `json:"-"`
}

// Waves returns the number of waves.
func (o Operation) Waves() int {
	n := 0
	for _, h := range o.Handoffs {
		n = max(n, h.Wave+1)
	}
	return n
}

// Totals computes the operation's totals.
func (o Operation) Totals() Totals {
	t := Totals{Shards: len(o.Handoffs), Waves: o.Waves(), StaleRouters: o.StaleRouters}
	var blocks []time.Duration
	waveDone := map[int]bool{}
	for _, h := range o.Handoffs {
		if _, ok := waveDone[h.Wave]; !ok {
			waveDone[h.Wave] = true
		}
		switch h.Step {
		case StepMoved:
			t.Moved++
		case StepAborted:
			t.Aborted++
		case StepSkipped:
			t.Skipped++
		}
		if !h.Step.Done() {
			waveDone[h.Wave] = false
		}
		if b := h.Block(); b > 0 {
			blocks = append(blocks, b)
		}
	}
	for _, d := range waveDone {
		if d {
			t.WavesDone++
		}
	}
	if len(blocks) > 0 {
		sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
		t.BlockP50Ms = quantile(blocks, 0.50).Milliseconds()
		t.BlockP99Ms = quantile(blocks, 0.99).Milliseconds()
		t.BlockMaxMs = blocks[len(blocks)-1].Milliseconds()
	}
	if !o.StartedAt.IsZero() {
		end := o.FinishedAt
		if end.IsZero() {
			end = time.Now()
		}
		t.DurationMs = end.Sub(o.StartedAt).Milliseconds()
	}
	return t
}

// quantile of sorted xs (nearest rank).
func quantile(xs []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(xs))+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// Errors.
var (
	// ErrNotFound means no operation has the id.
	ErrNotFound = errors.New("evac: no such operation")
	// ErrLocked means another unfinished operation holds the DC.
	ErrLocked = errors.New("evac: another operation runs for the DC")
	// ErrTooLarge means the plan does not fit one etcd value.
	ErrTooLarge = errors.New("evac: plan too large")
)

// LockedError says which operation holds a DC; it matches ErrLocked.
type LockedError struct {
	DC, Holder string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v: %s holds %s", ErrLocked, e.Holder, e.DC)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// maxRecord bounds an operation record (etcd's request limit is 1.5 MiB).
const maxRecord = 1 << 20

// Store keeps operation records and the per-DC locks of evacuations and
// restores (/oplocks/<dc>: the id of the unfinished operation of a DC).
type Store struct {
	st *state.Store
}

// NewStore returns the operation store on st.
func NewStore(st *state.Store) *Store { return &Store{st: st} }

// Key is the record key of id.
func (s *Store) Key(id string) string { return s.st.Key("operations", id) }

// Prefix is the prefix of every record.
func (s *Store) Prefix() string { return s.st.Prefix("operations") }

// LockKey is the key of dc's lock.
func (s *Store) LockKey(dc string) string { return s.st.Key("oplocks", dc) }

// NewID returns a new operation id, sortable by creation time.
func NewID(kind Kind, t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return string(kind) + "-" + t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// locks reports whether op holds a DC lock while it is unfinished.
func locks(op Operation) bool { return op.Kind != KindMoveShard }

// Create stores a new operation (PENDING) and takes its DC's lock. It
// fails with ErrLocked (wrapped, naming the holder) when another operation
// holds the DC.
func (s *Store) Create(ctx context.Context, op Operation) (Operation, error) {
	data, err := encode(op)
	if err != nil {
		return op, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.Key(op.ID)), "=", 0)}
	puts := []clientv3.Op{clientv3.OpPut(s.Key(op.ID), data)}
	if locks(op) {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.LockKey(op.DC)), "=", 0))
		puts = append(puts, clientv3.OpPut(s.LockKey(op.DC), op.ID))
	}
	resp, err := s.st.Client().Txn(ctx).If(cmps...).Then(puts...).Else(clientv3.OpGet(s.LockKey(op.DC))).Commit()
	if err != nil {
		return op, fmt.Errorf("evac: store operation: %w", err)
	}
	if !resp.Succeeded {
		holder := ""
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			holder = string(r.Kvs[0].Value)
		}
		if holder == "" {
			return op, fmt.Errorf("%w: operation %s exists", state.ErrConflict, op.ID)
		}
		return op, &LockedError{DC: op.DC, Holder: holder}
	}
	op.Revision = resp.Header.Revision
	return op, nil
}

func encode(op Operation) (string, error) {
	data, err := json.Marshal(op)
	if err != nil {
		return "", fmt.Errorf("evac: encode %s: %w", op.ID, err)
	}
	if len(data) > maxRecord {
		return "", fmt.Errorf("%w: %d handoffs take %d bytes; at most %d", ErrTooLarge, len(op.Handoffs), len(data), maxRecord)
	}
	return string(data), nil
}

// Get reads one operation.
func (s *Store) Get(ctx context.Context, id string) (Operation, error) {
	op, rev, err := state.Get[Operation](ctx, s.st, s.Key(id))
	if errors.Is(err, state.ErrNotFound) || err == nil && !op.Kind.known() {
		return op, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	op.Revision = rev
	return op, err
}

// List returns every operation of this package's kinds, oldest first, and
// the revision of the read.
func (s *Store) List(ctx context.Context) ([]Operation, int64, error) {
	resp, err := s.st.Client().Get(ctx, s.Prefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("evac: list operations: %w", err)
	}
	out := make([]Operation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var op Operation
		if json.Unmarshal(kv.Value, &op) != nil || !op.Kind.known() {
			continue
		}
		op.Revision = kv.ModRevision
		out = append(out, op)
	}
	return out, resp.Header.Revision, nil
}

// Update writes op over the version it was read at (op.Revision), fenced
// when fence is set, releasing the DC lock when op is no longer
// unfinished and taking it when it is (a resume). It returns the new
// revision; state.ErrConflict when the record (or the lock) changed.
func (s *Store) Update(ctx context.Context, op Operation, fence *state.Fence, extra ...clientv3.Op) (int64, error) {
	data, err := encode(op)
	if err != nil {
		return 0, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.Key(op.ID)), "=", op.Revision)}
	if fence != nil {
		cmps = append(cmps, fence.Cmp())
	}
	puts := append([]clientv3.Op{clientv3.OpPut(s.Key(op.ID), data)}, extra...)
	if locks(op) {
		lock := s.LockKey(op.DC)
		held, err := s.st.Client().Get(ctx, lock)
		if err != nil {
			return 0, fmt.Errorf("evac: read lock: %w", err)
		}
		holder := ""
		if len(held.Kvs) > 0 {
			holder = string(held.Kvs[0].Value)
		}
		switch {
		case op.State.Unfinished() && holder != "" && holder != op.ID:
			return 0, &LockedError{DC: op.DC, Holder: holder}
		case op.State.Unfinished() && holder == "":
			// A resume takes the lock again.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(lock), "=", 0))
			puts = append(puts, clientv3.OpPut(lock, op.ID))
		case !op.State.Unfinished() && holder == op.ID:
			cmps = append(cmps, clientv3.Compare(clientv3.Value(lock), "=", op.ID))
			puts = append(puts, clientv3.OpDelete(lock))
		}
	}
	resp, err := s.st.Client().Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return 0, fmt.Errorf("evac: update %s: %w", op.ID, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: operation %s changed, its DC lock moved or the leadership was lost", state.ErrConflict, op.ID)
	}
	return resp.Header.Revision, nil
}

// Watch streams the changes of operation id from revision from.
func (s *Store) Watch(ctx context.Context, id string, from int64) <-chan state.Event[Operation] {
	return state.Watch[Operation](ctx, s.st, s.Key(id), false, from)
}
