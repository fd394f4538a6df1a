package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/drplane/drplane/pkg/state"
)

// ErrSyncUnknown is wrapped by ReadJetStreamSync when the server's setting
// cannot be read.
var ErrSyncUnknown = errors.New("bus: NATS JetStream sync setting unknown")

// JetStreamSync is a NATS server's JetStream flush setting. It is server-wide:
// nothing a client does changes it.
type JetStreamSync struct {
	// Always: every write is flushed before it is acknowledged.
	Always bool
	// Interval, without Always, is how often the server flushes.
	Interval time.Duration
}

// ServerDefaultSyncInterval is how often a NATS server flushes JetStream when
// its configuration sets no sync_interval.
const ServerDefaultSyncInterval = 2 * time.Minute

// String is "always" or the interval.
func (s JetStreamSync) String() string {
	if s.Always {
		return "always"
	}
	return s.Interval.String()
}

// varz is the part of a server's /varz answer read here.
type varz struct {
	JetStream struct {
		Config *struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
	} `json:"jetstream"`
}

// ReadJetStreamSync reads the JetStream sync setting of the NATS server whose
// HTTP monitoring endpoint is monitorURL (http://host:8222), from its /varz.
func ReadJetStreamSync(ctx context.Context, hc *http.Client, monitorURL string) (JetStreamSync, error) {
	u := strings.TrimSuffix(monitorURL, "/") + "/varz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return JetStreamSync{}, fmt.Errorf("%w: %s: %w", ErrSyncUnknown, Redact(monitorURL), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which is named redacted
		}
		return JetStreamSync{}, fmt.Errorf("%w: %s: %w", ErrSyncUnknown, Redact(monitorURL), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return JetStreamSync{}, fmt.Errorf("%w: %s/varz answered %s", ErrSyncUnknown, Redact(monitorURL), resp.Status)
	}
	var v varz
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&v); err != nil {
		return JetStreamSync{}, fmt.Errorf("%w: %s/varz: %w", ErrSyncUnknown, Redact(monitorURL), err)
	}
	c := v.JetStream.Config
	if c == nil {
		return JetStreamSync{}, fmt.Errorf("%w: %s/varz reports no JetStream configuration (JetStream disabled?)", ErrSyncUnknown, Redact(monitorURL))
	}
	s := JetStreamSync{Always: c.SyncAlways, Interval: c.SyncInterval}
	if !s.Always && s.Interval <= 0 {
		s.Interval = ServerDefaultSyncInterval
	}
	return s, nil
}

// SyncReporterOptions configure a SyncReporter.
type SyncReporterOptions struct {
	DC string
	// Reporter is the reporting process's id.
	Reporter string
	// MonitorURL is the DC's NATS server's monitoring endpoint; empty means
	// not configured, which is reported as such.
	MonitorURL string
	Store      *state.Store
	// Lease returns the lease the record is written on.
	Lease func() clientv3.LeaseID
	// Every is the time between reads (default 30 s).
	Every  time.Duration
	HTTP   *http.Client
	Logger zerolog.Logger
	Now    func() time.Time
}

// SyncReporter reads the DC's NATS server's sync setting now and then and
// publishes it to etcd (state.NATSSync), where the coordinator's status
// judges the DC's durability.
type SyncReporter struct{ o SyncReporterOptions }

// NewSyncReporter returns a reporter.
func NewSyncReporter(o SyncReporterOptions) *SyncReporter {
	if o.Every <= 0 {
		o.Every = 30 * time.Second
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &SyncReporter{o: o}
}

// Run reports at once and then every Every until ctx ends.
func (r *SyncReporter) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.Every)
	defer t.Stop()
	last := ""
	for {
		rec := r.Read(ctx)
		if err := r.o.Store.PutNATSSync(ctx, rec, r.o.Lease()); err != nil && ctx.Err() == nil {
			r.o.Logger.Warn().Err(err).Msg("publish the NATS sync setting")
		}
		now := rec.Error + "|" + (JetStreamSync{Always: rec.Always, Interval: rec.Interval}).String()
		if now != last {
			last = now
			if rec.Error != "" {
				r.o.Logger.Warn().Str("error", rec.Error).Msg("NATS JetStream sync setting unknown")
			} else {
				r.o.Logger.Info().Bool("always", rec.Always).Dur("interval", rec.Interval).Msg("NATS JetStream sync setting")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Read reads the setting once into a record.
func (r *SyncReporter) Read(ctx context.Context) (rec state.NATSSync) {
	rec = state.NATSSync{DC: r.o.DC, Reporter: r.o.Reporter}
	defer func() { rec.ObservedAt = r.o.Now().UTC() }()
	if r.o.MonitorURL == "" {
		rec.Error = "nats_monitor_url is not configured"
		return rec
	}
	s, err := ReadJetStreamSync(ctx, r.o.HTTP, r.o.MonitorURL)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	rec.Always, rec.Interval = s.Always, s.Interval
	return rec
}
