package drill

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/drplane/drplane/pkg/labfile"
)

// sampleEvery is the interval of the read_only sampler.
const sampleEvery = 25 * time.Millisecond

// Sampler reads @@read_only on every instance of the lab, as each DC's app
// user, every sampleEvery, and keeps the samples per cluster: the record
// that NameTwoWritable and NameDeposed read.
type Sampler struct {
	targets []target

	mu      sync.Mutex
	samples map[ClusterID][]Sample
	// waiting are the callers of Next waiting for a round that begins
	// after their call.
	waiting []chan map[ClusterID]Sample
	// stopped is closed when Run returns.
	stopped chan struct{}
}

type target struct {
	cluster ClusterID
	name    string
	db      *sql.DB
}

// NewSampler opens a handle per instance; cluster names the lab's cluster
// in every DC.
func NewSampler(lab *labfile.Lab, cluster string) (*Sampler, error) {
	s := &Sampler{samples: map[ClusterID][]Sample{}, stopped: make(chan struct{})}
	for _, dc := range lab.DCs {
		for _, in := range dc.MySQL {
			db, err := openApp(dc.AppUser, dc.AppPassword, "", in.Addr, 200*time.Millisecond)
			if err != nil {
				s.Close()
				return nil, err
			}
			db.SetMaxOpenConns(2)
			s.targets = append(s.targets, target{cluster: ClusterID{dc.Name, cluster}, name: in.Name, db: db})
		}
	}
	return s, nil
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	defer close(s.stopped)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample reads every instance at once and records one sample per cluster.
func (s *Sampler) sample(ctx context.Context) {
	s.mu.Lock()
	waiting := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	from := time.Now()
	ro := make([]int, len(s.targets)) // 0 no answer, 1 read-only, 2 writable
	var wg sync.WaitGroup
	for i, t := range s.targets {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			var v int
			if err := t.db.QueryRowContext(qctx, "SELECT @@GLOBAL.read_only").Scan(&v); err == nil {
				ro[i] = 1
				if v == 0 {
					ro[i] = 2
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	at := time.Now()
	by := map[ClusterID]*Sample{}
	for i, t := range s.targets {
		sm := by[t.cluster]
		if sm == nil {
			sm = &Sample{From: from, At: at}
			by[t.cluster] = sm
		}
		switch ro[i] {
		case 2:
			sm.Writable = append(sm.Writable, t.name)
		case 1:
			sm.ReadOnly = append(sm.ReadOnly, t.name)
		}
	}
	round := make(map[ClusterID]Sample, len(by))
	s.mu.Lock()
	for id, sm := range by {
		s.samples[id] = append(s.samples[id], *sm)
		round[id] = *sm
	}
	s.mu.Unlock()
	for _, c := range waiting {
		c <- round
	}
}

// Next waits for the next round of samples that begins after the call,
// and returns it: what the record holds of the state the caller made
// before calling. Nil when ctx ends or Run returns first.
func (s *Sampler) Next(ctx context.Context) map[ClusterID]Sample {
	c := make(chan map[ClusterID]Sample, 1)
	s.mu.Lock()
	s.waiting = append(s.waiting, c)
	s.mu.Unlock()
	select {
	case r := <-c:
		return r
	case <-ctx.Done():
		return nil
	case <-s.stopped:
		return nil
	}
}

// Samples returns a copy of the samples so far.
func (s *Sampler) Samples() map[ClusterID][]Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[ClusterID][]Sample, len(s.samples))
	for id, v := range s.samples {
		out[id] = append([]Sample(nil), v...)
	}
	return out
}

// Master returns the instance of a cluster the last sample saw writable,
// if exactly one.
func (s *Sampler) Master(id ClusterID) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.samples[id]
	if len(v) == 0 || len(v[len(v)-1].Writable) != 1 {
		return "", false
	}
	return v[len(v)-1].Writable[0], true
}

// Clusters maps each instance to its cluster.
func (s *Sampler) Clusters() map[string]ClusterID {
	out := map[string]ClusterID{}
	for _, t := range s.targets {
		out[t.name] = t.cluster
	}
	return out
}

// Close closes the handles.
func (s *Sampler) Close() {
	for _, t := range s.targets {
		_ = t.db.Close()
	}
}
