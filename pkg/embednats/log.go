package embednats

import (
	"fmt"

	"github.com/rs/zerolog"
)

// serverLog adapts zerolog to the server's Logger interface. A fatal report (the server gives up, for
// instance on a port it cannot bind) is logged as an error and handed to the waiter through fatal; the
// process is never exited.
type serverLog struct {
	log   zerolog.Logger
	fatal chan error
}

func newServerLog(log zerolog.Logger) *serverLog {
	return &serverLog{log: log, fatal: make(chan error, 1)}
}

func (l *serverLog) Noticef(format string, v ...any) { l.log.Info().Msgf(format, v...) }
func (l *serverLog) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l *serverLog) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l *serverLog) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l *serverLog) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

func (l *serverLog) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	l.log.Error().Err(err).Msg("nats server failed")
	select {
	case l.fatal <- err:
	default:
	}
}
