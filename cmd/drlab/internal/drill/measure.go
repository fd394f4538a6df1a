package drill

import (
	"math"
	"sort"
	"time"
)

// Event is one DR event the drill caused, with what the writers and the
// system saw of it.
type Event struct {
	Step  string `json:"step"`
	Kind  string `json:"kind"`
	Round int    `json:"round"`
	// Target is what the step acted on: a cluster, an instance or a DC.
	Target string `json:"target"`
	// Available is false for a step the system does not offer yet; Reason
	// says why, and nothing else is set.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// At is when the fault was injected or the operation asked for; Done
	// when the step saw the system recovered.
	At   time.Time `json:"at,omitzero"`
	Done time.Time `json:"done,omitzero"`
	// Shards are the shards whose writes the event affected.
	Shards []int `json:"shards,omitempty"`
	// OldMaster is the instance the event took away, if any.
	OldMaster string `json:"old_master,omitempty"`

	// The writers' view: of all affected shards together, and shard by
	// shard.
	Outage Outage        `json:"outage"`
	Shard  *ShardOutages `json:"shard_outage,omitempty"`
	// LostWrites are acknowledged writes to the affected shards missing
	// after the event (the RPO the drill counts).
	LostWrites int `json:"lost_writes"`

	// City is the DC loss of a dc-loss or dc-return step: the system's
	// report of the loss next to the drill's, by request id.
	City *CityLoss `json:"city_failover,omitempty"`

	// The system's own record of the event, when it wrote one.
	Record *SystemRecord `json:"record,omitempty"`
	// Err is why the step itself failed (the fault could not be injected,
	// the operation was refused or never finished).
	Err string `json:"error,omitempty"`
	// Retried lists the answers of earlier attempts of an operation the
	// system refused or abandoned and the drill asked for again (a
	// switchover refused while the cluster was not healthy, or interrupted
	// by the HA agent losing leadership).
	Retried []string `json:"retried,omitempty"`
}

// SystemRecord is what the services recorded for an event: the HA agent's
// failover record, or the coordinator's operation of an evacuation or a
// restore (see operationRecord).
type SystemRecord struct {
	ID        string `json:"id"`
	Outcome   string `json:"outcome"`
	OldMaster string `json:"old_master,omitempty"`
	NewMaster string `json:"new_master,omitempty"`
	// Moved and Aborted count an operation's handoffs.
	Moved       int           `json:"moved,omitempty"`
	Aborted     int           `json:"aborted,omitempty"`
	RTO         time.Duration `json:"rto"`
	BlockWindow time.Duration `json:"block_window"`
	// RPO is the number of transactions the system says were lost; -1
	// when it does not know.
	RPO int64 `json:"rpo_transactions"`
	// Rewound counts the requests reship had shipped from the old master
	// that the new one lacks (the record's rewind): the other DCs applied
	// them, the event's DC does not have them.
	Rewound int `json:"rewound_requests,omitempty"`
	// RewoundIDs are their request ids (as many as the record keeps), and
	// RewoundAcked how many of them are writes the drill saw acknowledged.
	RewoundIDs   []string `json:"rewound_ids,omitempty"`
	RewoundAcked int      `json:"rewound_acknowledged,omitempty"`
	// DetectedAt, StartedAt, WritableAt and FinishedAt are the failover's
	// times as its record has them, and Steps its timed steps: with the
	// event's At and the outage's FirstAck they split the drill's RTO into
	// detection, decision, promotion and the routers.
	DetectedAt time.Time    `json:"detected_at,omitzero"`
	StartedAt  time.Time    `json:"started_at,omitzero"`
	WritableAt time.Time    `json:"writable_at,omitzero"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
	Steps      []RecordStep `json:"steps,omitempty"`
}

// RecordStep is one timed step of a failover record.
type RecordStep struct {
	Name string        `json:"name"`
	At   time.Time     `json:"at,omitzero"`
	Took time.Duration `json:"took"`
}

// matchRewound counts the rewound requests of rec that are acknowledged
// writes.
func matchRewound(rec *SystemRecord, writes []Write) {
	if rec == nil || len(rec.RewoundIDs) == 0 {
		return
	}
	ids := make(map[string]bool, len(rec.RewoundIDs))
	for _, id := range rec.RewoundIDs {
		ids[id] = true
	}
	rec.RewoundAcked = 0
	for _, w := range writes {
		if w.Acked() && ids[w.RequestID()] {
			rec.RewoundAcked++
		}
	}
}

// Outage is the writers' view of an event on the affected shards.
type Outage struct {
	// LastAck is the last acknowledgement before the longest gap in the
	// acknowledgements during the event, FirstAck the first after it; RTO
	// is the time between. Recovered is false when no write was
	// acknowledged after the event began (FirstAck and RTO unset).
	LastAck   time.Time     `json:"last_ack,omitzero"`
	FirstAck  time.Time     `json:"first_ack,omitzero"`
	RTO       time.Duration `json:"rto"`
	Recovered bool          `json:"recovered"`
	// Block is from the start of the first write that was not acknowledged
	// in the gap to FirstAck: how long writers were held up.
	Block time.Duration `json:"block"`
	// Failed counts the failed attempts on the affected shards during the
	// event.
	Failed int `json:"failed"`
}

// MeasureOutage computes the outage of an event from the writes to the
// affected shards. When old names the instance the event took away (a
// killed, paused or switched-over master), the outage ends with the first
// acknowledgement after at by another instance — a commit of the old
// master that returns just after the fault does not end it — and begins
// with the last acknowledgement before that. Otherwise it is the longest
// gap between acknowledgements that ends after at and begins before done.
func MeasureOutage(writes []Write, shards []int, at, done time.Time, old string) Outage {
	in := make(map[int]bool, len(shards))
	for _, s := range shards {
		in[s] = true
	}
	var acks []Write
	var o Outage
	for _, w := range writes {
		if !in[w.Shard] {
			continue
		}
		if w.Acked() {
			acks = append(acks, w)
		} else if !w.Start.Before(at) && !w.Start.After(done) {
			o.Failed++
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Ack.Before(acks[j].Ack) })
	// The last acknowledgement at or before the event: the gap's earliest
	// possible start.
	first := sort.Search(len(acks), func(i int) bool { return acks[i].Ack.After(at) })
	if first > 0 {
		o.LastAck = acks[first-1].Ack
	}
	end := -1
	if old != "" {
		for i := first; i < len(acks); i++ {
			if acks[i].Instance != old {
				end = i
				break
			}
		}
	} else {
		var bestGap time.Duration = -1
		for i := max(first-1, 0); i+1 < len(acks) && !acks[i].Ack.After(done); i++ {
			if g := acks[i+1].Ack.Sub(acks[i].Ack); g > bestGap {
				end, bestGap = i+1, g
			}
		}
		if end < 0 && first < len(acks) {
			end = first
		}
	}
	if end < 0 {
		return o
	}
	o.FirstAck, o.Recovered = acks[end].Ack, true
	if end > 0 {
		o.LastAck = acks[end-1].Ack
		o.RTO = o.FirstAck.Sub(o.LastAck)
	}
	blockStart := o.FirstAck
	for _, w := range writes {
		if !in[w.Shard] || !w.Start.After(o.LastAck) || !w.Start.Before(o.FirstAck) {
			continue
		}
		if (!w.Acked() || !w.Ack.Before(o.FirstAck)) && w.Start.Before(blockStart) {
			blockStart = w.Start
		}
	}
	o.Block = o.FirstAck.Sub(blockStart)
	return o
}

// ShardOutages is an event's outage shard by shard: each affected shard
// measured alone (MeasureOutage over its own writes), so that shards
// blocked one after the other (the waves of an evacuation, the flips of a
// city failover) each count, where the event's Outage is the longest gap
// of all of them together.
type ShardOutages struct {
	// RTO and Block aggregate the recovered shards.
	RTO   Stats `json:"rto"`
	Block Stats `json:"block"`
	// Worst is the shard with the longest block.
	Worst int `json:"worst_shard"`
	// Unrecovered lists the shards with no acknowledgement after the event.
	Unrecovered []int `json:"unrecovered,omitempty"`
}

// MeasureShards measures each of shards alone; nil without shards.
func MeasureShards(writes []Write, shards []int, at, done time.Time, old string) *ShardOutages {
	if len(shards) == 0 {
		return nil
	}
	by := map[int][]Write{}
	for _, w := range writes {
		by[w.Shard] = append(by[w.Shard], w)
	}
	out := &ShardOutages{Worst: -1}
	var rtos, blocks []time.Duration
	var worst time.Duration = -1
	for _, sh := range shards {
		o := MeasureOutage(by[sh], []int{sh}, at, done, old)
		if !o.Recovered {
			out.Unrecovered = append(out.Unrecovered, sh)
			continue
		}
		rtos, blocks = append(rtos, o.RTO), append(blocks, o.Block)
		if o.Block > worst {
			worst, out.Worst = o.Block, sh
		}
	}
	out.RTO, out.Block = StatsOf(rtos), StatsOf(blocks)
	return out
}

// Stats aggregates one figure over the events of one kind.
type Stats struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// StatsOf returns the nearest-rank p50 and p99 and the max of ds.
func StatsOf(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Stats{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// KindSummary aggregates the events of one kind.
type KindSummary struct {
	Kind      string `json:"kind"`
	Events    int    `json:"events"`
	Recovered int    `json:"recovered"`
	RTO       Stats  `json:"rto"`
	Block     Stats  `json:"block"`
	// ShardBlock aggregates each event's longest block of one shard.
	ShardBlock Stats `json:"shard_block"`
	SystemRTO  Stats `json:"system_rto"`
	LostWrites int   `json:"lost_writes"`
	// SystemRPO sums the transactions the failover records report lost;
	// -1 when one of them did not know.
	SystemRPO int64 `json:"system_rpo_transactions"`
}

// Summarize aggregates the available events per kind, in order of first
// appearance.
func Summarize(events []Event) []KindSummary {
	var order []string
	by := map[string][]Event{}
	for _, e := range events {
		if !e.Available {
			continue
		}
		if _, ok := by[e.Kind]; !ok {
			order = append(order, e.Kind)
		}
		by[e.Kind] = append(by[e.Kind], e)
	}
	out := make([]KindSummary, 0, len(order))
	for _, k := range order {
		s := KindSummary{Kind: k}
		var rto, block, shard, sys []time.Duration
		for _, e := range by[k] {
			s.Events++
			s.LostWrites += e.LostWrites
			if e.Shard != nil && e.Shard.Block.N > 0 {
				shard = append(shard, e.Shard.Block.Max)
			}
			if e.Outage.Recovered {
				s.Recovered++
				rto = append(rto, e.Outage.RTO)
				block = append(block, e.Outage.Block)
			}
			if e.Record != nil {
				sys = append(sys, e.Record.RTO)
				if e.Record.RPO < 0 || s.SystemRPO < 0 {
					s.SystemRPO = -1
				} else {
					s.SystemRPO += e.Record.RPO
				}
			}
		}
		s.RTO, s.Block, s.ShardBlock, s.SystemRTO = StatsOf(rto), StatsOf(block), StatsOf(shard), StatsOf(sys)
		out = append(out, s)
	}
	return out
}
